#!/usr/bin/env bash
# Builds every tool the tests, the demo and `make verify` need, from the Go module proxy,
# into bin/ (ignored by git). Each binary is named for its version, so bumping a version
# below builds the new one and a second run with nothing to do returns in well under a second.
#
#   hack/tools.sh            build whatever is missing
#   hack/tools.sh --print    print the assets directory (for KUBEBUILDER_ASSETS)
#
# Versions are the ones docs/testbed (and the design brief) verified to work together.
set -euo pipefail

KUBERNETES_VERSION=v1.37.2   # kube-apiserver, kube-scheduler, kube-controller-manager, kubectl
STAGING_VERSION=v0.37.2      # the k8s.io/* staging modules released with it
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.8.0
CONTROLLER_TOOLS_VERSION=v0.23.0
HELM_VERSION=v3.22.0
GOLANGCI_LINT_VERSION=v2.15.0

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${ROOT}/bin
ASSETS=${BIN}/k8s           # stable names (symlinks) for envtest and the test bed
WORK=${BIN}/.build          # wrapper modules, kept so a rebuild reuses them

if [[ "${1:-}" == "--print" ]]; then echo "${ASSETS}"; exit 0; fi

mkdir -p "${BIN}" "${ASSETS}" "${WORK}"
export GOFLAGS=-mod=mod
export CGO_ENABLED=0

log() { printf 'hack/tools.sh: %s\n' "$*" >&2; }

# link NAME VERSIONED: point the stable name in bin/k8s at the versioned binary.
link() {
  ln -sfn "../$2" "${ASSETS}/$1"
}

# go_install NAME PACKAGE VERSION: for modules that `go install pkg@version` builds as they are.
go_install() {
  local name=$1 pkg=$2 version=$3 out="${BIN}/$1-$3"
  if [[ ! -x "${out}" ]]; then
    log "building ${name} ${version} (${pkg})"
    local tmp; tmp=$(mktemp -d)
    GOBIN="${tmp}" go install "${pkg}@${version}"
    mv "${tmp}/${name}" "${out}"
    rm -rf "${tmp}"
  fi
  link "${name}" "${name}-${version}"
}

# Kubernetes' own binaries: k8s.io/kubernetes replaces its staging modules with ./staging
# paths, so it cannot be `go install`ed. A throw-away wrapper module requires it and
# replaces each staging module with its released version instead.
build_kubernetes() {
  local cmds=(kube-apiserver kube-scheduler kube-controller-manager kubectl) missing=()
  for c in "${cmds[@]}"; do
    [[ -x "${BIN}/${c}-${KUBERNETES_VERSION}" ]] || missing+=("${c}")
  done
  if (( ${#missing[@]} > 0 )); then
    log "building ${missing[*]} ${KUBERNETES_VERSION} (about 5 minutes the first time)"
    local dir="${WORK}/kubernetes-${KUBERNETES_VERSION}"
    mkdir -p "${dir}"
    if [[ ! -f "${dir}/go.sum" ]]; then
      local gomod
      gomod=$(go mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
      {
        echo "module hyperpool.local/kubernetes-tools"
        echo
        echo "go 1.26.8"
        echo
        echo "require k8s.io/kubernetes ${KUBERNETES_VERSION}"
        echo
        sed -n 's#^[[:space:]]*\(k8s.io/[^ ]*\) => ./staging/.*#replace \1 => \1 '"${STAGING_VERSION}"'#p' "${gomod}"
      } >"${dir}/go.mod"
      printf 'package tools\n\nimport (\n' >"${dir}/tools.go"
      for c in "${cmds[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "${c}" >>"${dir}/tools.go"; done
      printf ')\n' >>"${dir}/tools.go"
      sed -i '1i //go:build tools\n' "${dir}/tools.go"
      (cd "${dir}" && go mod tidy -e >/dev/null)
    fi
    for c in "${missing[@]}"; do
      (cd "${dir}" && go build -trimpath -o "${BIN}/${c}-${KUBERNETES_VERSION}" "k8s.io/kubernetes/cmd/${c}")
    done
  fi
  for c in "${cmds[@]}"; do link "${c}" "${c}-${KUBERNETES_VERSION}"; done
}

# etcd: its server module replaces its sibling modules with local paths; same trick.
build_etcd() {
  local out="${BIN}/etcd-${ETCD_VERSION}"
  if [[ ! -x "${out}" ]]; then
    log "building etcd ${ETCD_VERSION}"
    local dir="${WORK}/etcd-${ETCD_VERSION}"
    mkdir -p "${dir}"
    cat >"${dir}/go.mod" <<MOD
module hyperpool.local/etcd-tools

go 1.26.8

require go.etcd.io/etcd/server/v3 ${ETCD_VERSION}

replace (
	go.etcd.io/etcd/api/v3 => go.etcd.io/etcd/api/v3 ${ETCD_VERSION}
	go.etcd.io/etcd/client/pkg/v3 => go.etcd.io/etcd/client/pkg/v3 ${ETCD_VERSION}
	go.etcd.io/etcd/client/v3 => go.etcd.io/etcd/client/v3 ${ETCD_VERSION}
	go.etcd.io/etcd/pkg/v3 => go.etcd.io/etcd/pkg/v3 ${ETCD_VERSION}
)
MOD
    printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >"${dir}/tools.go"
    (cd "${dir}" && go mod tidy -e >/dev/null && go build -trimpath -o "${out}" go.etcd.io/etcd/server/v3)
  fi
  link etcd "etcd-${ETCD_VERSION}"
}

build_kubernetes
build_etcd
go_install kwok sigs.k8s.io/kwok/cmd/kwok "${KWOK_VERSION}"
go_install controller-gen sigs.k8s.io/controller-tools/cmd/controller-gen "${CONTROLLER_TOOLS_VERSION}"
go_install helm helm.sh/helm/v3/cmd/helm "${HELM_VERSION}"
go_install golangci-lint github.com/golangci/golangci-lint/v2/cmd/golangci-lint "${GOLANGCI_LINT_VERSION}"
