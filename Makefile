# hyperpool: warm pools of Hyper-V-isolated Windows sandboxes for AI agent sessions.
#
#   make test       build the test bed on first use, then run every test (README: times)
#   make verify     lint; fail when generated code or manifests are stale
#   make help       everything else

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

BIN          := $(CURDIR)/bin
ASSETS       := $(BIN)/k8s
CONTROLLER_GEN := $(ASSETS)/controller-gen
GO_TEST_FLAGS ?= -race -count=1 -timeout=25m

export KUBEBUILDER_ASSETS := $(ASSETS)

# The one version of a release: appVersion of charts/hyperpool/Chart.yaml (no VERSION file:
# the top level holds only what the layout rule lists). It is stamped into the binaries
# (--version, internal/version), the image tags and labels, the chart and the CRD bundle;
# make verify fails when a copy disagrees.
VERSION  := $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$$/\1/p' charts/hyperpool/Chart.yaml)
REVISION := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -X github.com/hyperpool/hyperpool/internal/version.Version=$(VERSION) \
            -X github.com/hyperpool/hyperpool/internal/version.Revision=$(REVISION)

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

##@ Development

.PHONY: tools
tools: ## Build kube-apiserver, etcd, kube-scheduler, kube-controller-manager, kwok, controller-gen, helm into bin/.
	hack/tools.sh

.PHONY: manifests
manifests: tools ## Generate the CRDs and the manager's RBAC role from markers; copy both into charts/hyperpool.
	$(CONTROLLER_GEN) rbac:roleName=hyperpool-manager crd:generateEmbeddedObjectMeta=true paths="./..." \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	rm -rf charts/hyperpool/crds && mkdir -p charts/hyperpool/crds
	cp config/crd/bases/*.yaml charts/hyperpool/crds/
	hack/chart-rbac.sh

.PHONY: generate
generate: tools ## Generate DeepCopy methods from markers.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./..."

.PHONY: fmt
fmt: ## gofmt the code.
	gofmt -w $$(git ls-files '*.go')

# What runs on Windows: the node agent, the kubectl plugin and the Go client (with the API
# types and the internal packages they share). The manager and the tests run on Linux only.
WINDOWS_PACKAGES := ./api/... ./cmd/kubectl-agents/... ./cmd/node-agent/... ./internal/... ./pkg/...

.PHONY: vet
# With test-programs' flags, so that make test after make verify (CI) finds them compiled.
vet: ## go vet, for Linux and, for what runs there, for Windows (make verify runs it).
	CGO_ENABLED=0 go vet -trimpath ./...
	GOOS=windows CGO_ENABLED=0 go vet -trimpath $(WINDOWS_PACKAGES)

# The programs the tests build and run as processes (the manager, the plugin, hack/release
# and the images it builds, the Windows node agent among them), compiled once up front with
# the release's flags (static, -trimpath). Their packages are then in the build cache, and
# the test packages that build them in parallel only link: from an empty cache, each would
# otherwise compile the same dependency tree at the same time.
.PHONY: test-programs
test-programs:
	CGO_ENABLED=0 go build -trimpath ./cmd/manager ./cmd/kubectl-agents ./hack/release
	GOOS=windows CGO_ENABLED=0 go build -trimpath ./cmd/node-agent

GOLANGCI_LINT := $(ASSETS)/golangci-lint

.PHONY: lint
lint: tools ## golangci-lint (.golangci.yml), for Linux and for the Windows-only node agent code.
	$(GOLANGCI_LINT) run ./...
	GOOS=windows $(GOLANGCI_LINT) run ./internal/nodeagent/... ./cmd/node-agent/...

.PHONY: dashboard
dashboard: ## Write the chart's Grafana dashboard, charts/hyperpool/files/dashboard.json, from hack/dashboard.py.
	python3 hack/dashboard.py charts/hyperpool/files/dashboard.json

.PHONY: docs
docs: ## Render the figures of docs/*.md from the runs kept in docs/results (hack/docs).
	go run ./hack/docs

.PHONY: verify
verify: manifests generate dashboard lint vet ## Regenerate everything and lint; fail when the result differs from what is committed.
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed on: $$(gofmt -l $$(git ls-files '*.go'))"; exit 1; }
	@git diff --exit-code -- api config charts || { echo "generated files are stale: run 'make manifests generate dashboard' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- api config charts)" || { echo "untracked generated files: $$(git status --porcelain -- api config charts)"; exit 1; }
	go run ./hack/release check-version -version=$(VERSION)
	go run ./hack/docs -check

# A count, not a duration: with -fuzztime=Ns the fuzzing engine can report a spurious
# "context deadline exceeded" failure when the time runs out mid-run.
FUZZTIME ?= 3000x

.PHONY: fuzz
fuzz: ## Run every fuzz target briefly (FUZZTIME inputs each).
	go test -run='^$$' -fuzz='^FuzzCanRun$$' -fuzztime=$(FUZZTIME) ./internal/windows/
	go test -run='^$$' -fuzz='^FuzzMemoryMB$$' -fuzztime=$(FUZZTIME) ./internal/uvm/
	go test -run='^$$' -fuzz='^FuzzParseHeartbeat$$' -fuzztime=$(FUZZTIME) ./controllers/
	go test -run='^$$' -fuzz='^FuzzEffectiveLifetime$$' -fuzztime=$(FUZZTIME) ./controllers/
	go test -run='^$$' -fuzz='^FuzzSummary$$' -fuzztime=$(FUZZTIME) ./internal/nodeagent/
	go test -run='^$$' -fuzz='^FuzzCheck$$' -fuzztime=$(FUZZTIME) ./internal/runtimereport/

# make fuzz is not part of make test (CI runs both): fuzzing instruments every dependency,
# one more compile of the whole tree from an empty build cache. The fuzz targets' seed
# corpora run in make test as ordinary tests.
.PHONY: test
test: tools test-programs ## Build the test bed, then run all tests with the race detector against a real API server.
	go test $(GO_TEST_FLAGS) ./...

##@ Build and run

.PHONY: build
build: ## Build the manager binary into bin/manager and the kubectl plugin into bin/kubectl-agents.
	go build -ldflags "$(LDFLAGS)" -o $(BIN)/manager ./cmd/manager
	go build -ldflags "$(LDFLAGS)" -o $(BIN)/kubectl-agents ./cmd/kubectl-agents

.PHONY: run
run: manifests ## Run the manager against the cluster of the current kubeconfig.
	go run ./cmd/manager

##@ Install

HELM := $(ASSETS)/helm

.PHONY: helm-lint
helm-lint: tools ## helm lint the chart, with default and with every optional part on.
	$(HELM) lint --strict charts/hyperpool
	$(HELM) lint --strict charts/hyperpool -f test/helm/testdata/values-all.yaml

##@ Release

# A registry reference of the node agent's Windows base image, pulled by `make images`; see
# docs/install.md. Empty: the image is built without a base layer (none can be had offline).
NODE_AGENT_BASE ?=

.PHONY: version
version: ## Print the release version (appVersion of charts/hyperpool/Chart.yaml).
	@echo $(VERSION)

.PHONY: images
images: ## Build the images without Docker: OCI layouts and docker-load tarballs in bin/images (NODE_AGENT_BASE=ref for the node agent's base).
	go run ./hack/release images -version=$(VERSION) -revision=$(REVISION) -out=$(BIN)/images -node-agent-base=$(NODE_AGENT_BASE)

# The release then checks itself: test/images reads bin/images and bin/release (every
# platform; make test builds the host's only).
.PHONY: release
release: tools images ## The release bundle in bin/release: chart, image tarballs, crds.yaml, install.yaml, SHA256SUMS; then test/images checks them.
	go run ./hack/release bundle -version=$(VERSION) -images=$(BIN)/images -out=$(BIN)/release -helm=$(HELM)
	HYPERPOOL_IMAGES=$(BIN)/images HYPERPOOL_RELEASE=$(BIN)/release HYPERPOOL_REVISION=$(REVISION) go test -count=1 ./test/images/

##@ Demo

.PHONY: demo
demo: ## On a laptop with no cluster: control plane, simulated Windows nodes, helm install, manager, sessions.
	hack/demo.sh up

.PHONY: demo-down
demo-down: ## Stop what `make demo` started (only its recorded PIDs).
	hack/demo.sh down

##@ Benchmark

.PHONY: bench
bench: tools ## Run the benchmark (issue 7) at sizes that fit 2 cores; results in bin/bench-results. BENCH_FLAGS=-full for the issue's sizes.
	go run ./test/bench/cmd/bench -out=$(BIN)/bench-results $(BENCH_FLAGS)

.PHONY: bench-day
bench-day: tools ## The simulated day (issues 16, 25): five days (seeds), 9 min each, fixed pools of 2, 4, 8 against autoscalers at warmHitTarget 0.9, 0.95, 0.99 (DAY_FLAGS to change); day.json (kept run), day.md, day.png in bin/day-results.
	go run ./test/bench/cmd/day -out=$(BIN)/day-results $(DAY_FLAGS)

.PHONY: chaos
chaos: tools ## Chaos test (issues 8, 25): 1,000 sessions at 50/s, leader SIGKILLed once while etcd is paused and 3 times more, kube-apiserver restarted once; fails on any violation; writes bin/chaos-results/chaos.json. CHAOS_FLAGS to resize.
	go run ./test/chaos/cmd/chaos $(CHAOS_FLAGS)
