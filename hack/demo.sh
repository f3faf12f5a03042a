#!/usr/bin/env bash
# make demo / make demo-down: hyperpool on a laptop with no cluster.
#
#   hack/demo.sh up     build what is missing, start a local control plane with simulated
#                       Windows nodes, helm install the chart, run the manager, open sessions
#   hack/demo.sh down   stop what `up` started (only the PIDs recorded in .demo/pids)
#
# Everything lives in .demo/ (ignored by git): PIDs, logs, the kubeconfig.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEMO=${ROOT}/.demo
PIDS=${DEMO}/pids
KUBECONFIG_FILE=${DEMO}/kubeconfig
NS=demo
RELEASE_NS=hyperpool-system
METRICS_ADDR=${HYPERPOOL_DEMO_METRICS:-127.0.0.1:18080}
PROBE_ADDR=${HYPERPOOL_DEMO_PROBES:-127.0.0.1:18081}
ASSETS=${ROOT}/bin/k8s
KUBECTL=("${ASSETS}/kubectl" --kubeconfig "${KUBECONFIG_FILE}")
HELM=("${ASSETS}/helm" --kubeconfig "${KUBECONFIG_FILE}")
# The kubectl plugin, built into PLUGIN_DIR, which the demo's plugin calls put first on PATH:
# the real kubectl finds kubectl-agents there (plugin discovery). The simulated nodes run
# commands as local Linux processes, hence KUBECTL_AGENTS_SANDBOX_OS=linux.
PLUGIN_DIR=${DEMO}/bin
AGENTS=(env "PATH=${PLUGIN_DIR}:${PATH}" "KUBECONFIG=${KUBECONFIG_FILE}" KUBECTL_AGENTS_SANDBOX_OS=linux
  "${ASSETS}/kubectl" agents)

step=0
if [[ -t 1 ]]; then BOLD=$'\033[1m' RESET=$'\033[0m'; else BOLD='' RESET=''; fi
say()  { step=$((step + 1)); printf '\n%s[%d] %s%s\n' "${BOLD}" "${step}" "$*" "${RESET}"; }
info() { printf '    %s\n' "$*"; }
die()  { printf '\nhack/demo.sh: %s\n' "$*" >&2; exit 1; }

# alive NAME: the recorded process NAME is running.
alive() { [[ -f "${PIDS}/$1" ]] && kill -0 "$(cat "${PIDS}/$1")" 2>/dev/null; }

running() {
  for f in "${PIDS}"/*; do
    [[ -e "${f}" ]] && alive "$(basename "${f}")" && return 0
  done
  return 1
}

# wait_for SECONDS WHAT CMD...: poll CMD until it succeeds.
wait_for() {
  local timeout=$1 what=$2 deadline
  shift 2
  deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "timed out after ${timeout}s waiting for ${what}"
    sleep 0.2
  done
}

# ms FROM TO: milliseconds between two `date +%s%N` stamps.
ms() { echo $((($2 - $1) / 1000000)); }

# open_session NAME CLASS [EXTRA_SPEC_YAML]: create a session, wait until Ready, narrate.
open_session() {
  local name=$1 class=$2 extra=${3:-} t0 t1
  t0=$(date +%s%N)
  "${KUBECTL[@]}" -n "${NS}" create -f - >/dev/null <<YAML
apiVersion: agents.hyperpool.io/v1alpha1
kind: AgentSession
metadata:
  name: ${name}
spec:
  sandboxName: ${class}
  user: demo@example.com
${extra}
YAML
  "${KUBECTL[@]}" -n "${NS}" wait --for=jsonpath='{.status.phase}'=Ready "ases/${name}" --timeout=60s >/dev/null
  t1=$(date +%s%N)
  local start pod node note
  start=$("${KUBECTL[@]}" -n "${NS}" get "ases/${name}" -o jsonpath='{.status.startType}')
  pod=$("${KUBECTL[@]}" -n "${NS}" get "ases/${name}" -o jsonpath='{.status.podName}')
  node=$("${KUBECTL[@]}" -n "${NS}" get "ases/${name}" -o jsonpath='{.status.nodeName}')
  note=$("${KUBECTL[@]}" -n "${NS}" get "ases/${name}" -o jsonpath='{.status.conditions[?(@.type=="Ready")].message}' 2>/dev/null || true)
  info "session ${name}: ${start} start, pod ${pod} on ${node}; Ready $(ms "${t0}" "${t1}") ms after kubectl create (as seen by kubectl, process start included)"
  [[ -n "${note}" ]] && info "  its Ready condition: ${note}"
  return 0
}

up() {
  mkdir -p "${PIDS}"
  if running; then
    die "a demo is already running (PIDs in ${PIDS}). Use it with: export KUBECONFIG=${KUBECONFIG_FILE}; stop it with: make demo-down"
  fi
  rm -f "${PIDS}"/* "${KUBECONFIG_FILE}"

  say "Building the test bed's binaries (first time ~10 min), the manager, the kubectl plugin and the demo control plane"
  "${ROOT}/hack/tools.sh"
  (cd "${ROOT}" && go build -o bin/manager ./cmd/manager && go build -o bin/demo-controlplane ./hack/demo/controlplane &&
    go build -o "${PLUGIN_DIR}/kubectl-agents" ./cmd/kubectl-agents)
  info "bin/manager, bin/demo-controlplane, .demo/bin/kubectl-agents, bin/k8s/{kube-apiserver,etcd,kwok,helm,kubectl,...}"

  say "Starting a local control plane: etcd, kube-apiserver, scheduler, controller-manager, kwok"
  info "simulated Windows nodes: 3 x Server 2022 (10.0.20348), 1 x Server 2019 (10.0.17763); a Hyper-V VM 'boots' in 3 s"
  KUBEBUILDER_ASSETS=${ASSETS} nohup "${ROOT}/bin/demo-controlplane" --write-kubeconfig "${KUBECONFIG_FILE}" \
    >"${DEMO}/controlplane.log" 2>&1 &
  echo $! >"${PIDS}/controlplane"
  local deadline=$((SECONDS + 120))
  until [[ -f "${KUBECONFIG_FILE}" ]]; do
    alive controlplane || { tail -20 "${DEMO}/controlplane.log" >&2; die "the control plane exited; log: ${DEMO}/controlplane.log"; }
    ((SECONDS < deadline)) || die "the control plane did not come up in 120s; log: ${DEMO}/controlplane.log"
    sleep 0.2
  done
  sed 's/^/    /' "${DEMO}/controlplane.log"
  "${KUBECTL[@]}" get nodes -L node.kubernetes.io/windows-build | sed 's/^/    /'

  say "helm install hyperpool charts/hyperpool (CRDs, RBAC, RuntimeClasses; the manager runs locally, so replicas=0)"
  "${HELM[@]}" install hyperpool "${ROOT}/charts/hyperpool" --namespace "${RELEASE_NS}" --create-namespace \
    --set replicas=0 --set runtimeClasses.enabled=true | sed -n '1,6p' | sed 's/^/    /'
  "${KUBECTL[@]}" get runtimeclass | sed 's/^/    /'

  say "Running the manager as the chart's ServiceAccount (impersonated), leader election on"
  # The same credentials, impersonating the ServiceAccount (kubeconfig field users[].user.as).
  sed "s/^  user:\$/  user:\n    as: system:serviceaccount:${RELEASE_NS}:hyperpool-manager/" \
    "${KUBECONFIG_FILE}" >"${DEMO}/manager.kubeconfig"
  grep -q '^    as: system:serviceaccount:' "${DEMO}/manager.kubeconfig" || die "could not write ${DEMO}/manager.kubeconfig"
  nohup "${ROOT}/bin/manager" --kubeconfig "${DEMO}/manager.kubeconfig" --leader-elect \
    --leader-election-namespace "${RELEASE_NS}" --metrics-bind-address "${METRICS_ADDR}" \
    --health-probe-bind-address "${PROBE_ADDR}" >"${DEMO}/manager.log" 2>&1 &
  echo $! >"${PIDS}/manager"
  wait_for 30 "the manager's /readyz" curl -fsS "http://${PROBE_ADDR}/readyz"
  wait_for 30 "the manager to lead" "${KUBECTL[@]}" -n "${RELEASE_NS}" get lease hyperpool-manager.agents.hyperpool.io
  info "manager PID $(cat "${PIDS}/manager"), log ${DEMO}/manager.log, metrics http://${METRICS_ADDR}/metrics"

  say "Applying the samples in namespace ${NS}: a Server Core 2022 pool of 3, a Nano Server 2019 pool of 2, a quota"
  "${KUBECTL[@]}" create namespace "${NS}" >/dev/null
  wait_for 30 "the default ServiceAccount" "${KUBECTL[@]}" -n "${NS}" get serviceaccount default
  for f in agentsandbox agentsandbox_nanoserver agentquota; do
    "${KUBECTL[@]}" -n "${NS}" apply --server-side -f "${ROOT}/config/samples/agents_v1alpha1_${f}.yaml" | sed 's/^/    /'
  done
  "${KUBECTL[@]}" -n "${NS}" wait --for=jsonpath='{.status.readyReplicas}'=3 asb/servercore-2022 --timeout=90s >/dev/null
  "${KUBECTL[@]}" -n "${NS}" wait --for=jsonpath='{.status.readyReplicas}'=2 asb/nanoserver-2019 --timeout=90s >/dev/null
  "${KUBECTL[@]}" -n "${NS}" get agents | sed 's/^/    /'
  info "build filtering: the 2022 pool's pods avoid the 2019 node (a 20348 image cannot run on a 17763 host):"
  "${KUBECTL[@]}" -n "${NS}" get pods -o custom-columns='POD:.metadata.name,NODE:.spec.nodeName,RUNTIMECLASS:.spec.runtimeClassName' | sed 's/^/      /'

  say "Warm bind: a session takes a Ready pod from the pool at once"
  open_session alice-refactor servercore-2022 "  maxLifetime: 30m"

  say "Cold start: scale the Nano Server pool to 0, then open a session (the VM boots for it)"
  "${KUBECTL[@]}" -n "${NS}" scale asb/nanoserver-2019 --replicas=0 | sed 's/^/    /'
  wait_for 30 "the nanoserver pool to drain" bash -c "[[ \$('${ASSETS}/kubectl' --kubeconfig '${KUBECONFIG_FILE}' -n ${NS} get pods -l agents.hyperpool.io/sandbox=nanoserver-2019 -o name | wc -l) == 0 ]]"
  open_session bob-tests nanoserver-2019

  say "Expiry: a session with maxLifetime 8s ends on time, and its sandbox is destroyed"
  open_session carol-quick servercore-2022 "  maxLifetime: 8s"
  local t0=$(date +%s)
  "${KUBECTL[@]}" -n "${NS}" wait --for=jsonpath='{.status.phase}'=Expired ases/carol-quick --timeout=30s >/dev/null
  info "carol-quick: $("${KUBECTL[@]}" -n "${NS}" get ases/carol-quick -o jsonpath='{.status.phase} ({.status.endReason}) at {.status.endTime}, expiry was {.status.expiryTime}') after $(( $(date +%s) - t0 )) s of waiting"

  say "Quota: cap the namespace at 2 active sessions; a third waits its turn and starts when one ends"
  "${KUBECTL[@]}" -n "${NS}" patch aq/default --type=merge -p '{"spec":{"hard":{"sessions":2}}}' | sed 's/^/    /'
  "${KUBECTL[@]}" -n "${NS}" create -f - >/dev/null <<YAML
apiVersion: agents.hyperpool.io/v1alpha1
kind: AgentSession
metadata:
  name: dave-queued
spec:
  sandboxName: servercore-2022
  user: demo@example.com
YAML
  "${KUBECTL[@]}" -n "${NS}" wait --for=jsonpath='{.status.phase}'=Queued ases/dave-queued --timeout=30s >/dev/null
  info "dave-queued: $("${KUBECTL[@]}" -n "${NS}" get ases/dave-queued -o jsonpath='{.status.phase}: {.status.conditions[?(@.type=="QuotaReserved")].message}')"
  "${KUBECTL[@]}" -n "${NS}" get aq | sed 's/^/    /'
  info "alice-refactor ends (deleted); dave-queued is admitted:"
  local tq=$(date +%s%N)
  "${KUBECTL[@]}" -n "${NS}" delete ases/alice-refactor | sed 's/^/    /'
  "${KUBECTL[@]}" -n "${NS}" wait --for=jsonpath='{.status.phase}'=Ready ases/dave-queued --timeout=60s >/dev/null
  info "dave-queued: Ready $(ms "${tq}" "$(date +%s%N)") ms after alice-refactor was deleted, on pod $("${KUBECTL[@]}" -n "${NS}" get ases/dave-queued -o jsonpath='{.status.podName}')"

  say "kubectl get agents"
  "${KUBECTL[@]}" -n "${NS}" get agents | sed 's/^/    /'

  say "kubectl agents: open a session, run a command, copy a file in and out, list, end (the plugin, through kubectl)"
  info "the simulated nodes run each command as a local process in its pod's directory (--sandbox-os linux)"
  info "the quota's 2 sessions are in use (bob-tests, dave-queued): raise it to 3"
  "${KUBECTL[@]}" -n "${NS}" patch aq/default --type=merge -p '{"spec":{"hard":{"sessions":3}}}' | sed 's/^/    /'
  info "\$ kubectl agents open servercore-2022 -n ${NS} --user demo@example.com   (progress on stderr, the name on stdout)"
  local s
  if ! s=$("${AGENTS[@]}" open servercore-2022 -n "${NS}" --user demo@example.com --timeout 60s 2>"${DEMO}/open.stderr"); then
    cat "${DEMO}/open.stderr" >&2
    die "kubectl agents open failed"
  fi
  sed 's/^/      stderr: /' "${DEMO}/open.stderr"
  info "  stdout: ${s}"
  info "\$ kubectl agents exec ${s} -n ${NS} -- sh -c 'pwd; uname -sm'"
  "${AGENTS[@]}" exec "${s}" -n "${NS}" -- sh -c 'pwd; uname -sm' | sed 's/^/      /'
  local cpdir=${DEMO}/cp
  rm -rf "${cpdir}" && mkdir -p "${cpdir}/back"
  printf 'notes from the laptop, %s\n' "$(date -u +%FT%TZ)" >"${cpdir}/notes.txt"
  info "\$ kubectl agents cp ${cpdir#"${ROOT}"/}/notes.txt ${s}: -n ${NS}   (into the sandbox's working directory)"
  "${AGENTS[@]}" cp "${cpdir}/notes.txt" "${s}:" -n "${NS}"
  info "\$ kubectl agents exec ${s} -n ${NS} -- cat notes.txt"
  "${AGENTS[@]}" exec "${s}" -n "${NS}" -- cat notes.txt | sed 's/^/      /'
  info "\$ kubectl agents cp ${s}:notes.txt ${cpdir#"${ROOT}"/}/back -n ${NS}   (and back out)"
  "${AGENTS[@]}" cp "${s}:notes.txt" "${cpdir}/back" -n "${NS}"
  cmp -s "${cpdir}/notes.txt" "${cpdir}/back/notes.txt" || die "the file copied back differs from the original"
  info "  equal: $(cd "${ROOT}" && sha256sum "${cpdir#"${ROOT}"/}/notes.txt" "${cpdir#"${ROOT}"/}/back/notes.txt" | awk '{printf "%s%s %s", sep, substr($1, 1, 16), $2; sep = ", "}')"
  info "\$ kubectl agents ls -n ${NS}"
  "${AGENTS[@]}" ls -n "${NS}" | sed 's/^/      /'
  local pod
  pod=$("${KUBECTL[@]}" -n "${NS}" get "ases/${s}" -o jsonpath='{.status.podName}')
  info "\$ kubectl agents end ${s} -n ${NS}"
  "${AGENTS[@]}" end "${s}" -n "${NS}" | sed 's/^/      /'
  "${KUBECTL[@]}" -n "${NS}" wait --for=delete "ases/${s}" "pod/${pod}" --timeout=30s >/dev/null 2>&1 || true
  info "\$ kubectl -n ${NS} get ases/${s} pod/${pod}   (the session and its sandbox are gone)"
  "${KUBECTL[@]}" -n "${NS}" get "ases/${s}" "pod/${pod}" 2>&1 | sed 's/^/      /' || true

  say "kubectl agents doctor: the checklist of what hyperpool needs, here for namespace ${NS}"
  info "\$ kubectl agents doctor -n ${NS}   (node agents do not apply: the simulated nodes run none)"
  "${AGENTS[@]}" doctor -n "${NS}" | sed 's/^/      /' || die "kubectl agents doctor found a failed check (above)"

  say "Metrics (a few lines of http://${METRICS_ADDR}/metrics)"
  curl -fsS "http://${METRICS_ADDR}/metrics" | grep -E '^hyperpool_(warm_sandboxes|sessions|vm_memory_bytes|quota_used|queued_sessions)' | head -16 | sed 's/^/    /' || true

  cat <<EOF_DONE

The demo keeps running. Poke around:

  export KUBECONFIG=${KUBECONFIG_FILE}
  export PATH=${PLUGIN_DIR}:\$PATH KUBECTL_AGENTS_SANDBOX_OS=linux   # for kubectl agents
  kubectl -n ${NS} get agents
  kubectl -n ${NS} get ases dave-queued -o yaml
  S=\$(kubectl agents open servercore-2022 -n ${NS}); kubectl agents exec \$S -n ${NS} -- ls -la
  kubectl agents doctor -n ${NS}                 # the checklist; --e2e runs a throwaway session end to end
  kubectl -n ${NS} scale asb/servercore-2022 --replicas=5
  kubectl -n ${NS} annotate --overwrite ases/dave-queued agents.hyperpool.io/last-activity=\$(date -u +%FT%TZ)
  curl -s http://${METRICS_ADDR}/metrics | grep ^hyperpool_
  tail -f ${DEMO}/manager.log

Stop it (only what the demo started): make demo-down
EOF_DONE
}

down() {
  if [[ ! -d "${PIDS}" ]] || ! running; then
    echo "no demo is running"
    rm -rf "${PIDS}"
    return 0
  fi
  # The manager first (it releases its Lease), then the control plane (it stops its children).
  for name in manager controlplane; do
    alive "${name}" || continue
    local pid
    pid=$(cat "${PIDS}/${name}")
    echo "stopping ${name} (PID ${pid})"
    kill -TERM "${pid}"
    for _ in $(seq 1 150); do
      kill -0 "${pid}" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "${pid}" 2>/dev/null; then
      echo "${name} (PID ${pid}) did not stop in 30s; killing it"
      kill -KILL "${pid}" 2>/dev/null || true
    fi
  done
  rm -rf "${PIDS}" "${KUBECONFIG_FILE}" "${DEMO}/manager.kubeconfig"
  echo "demo stopped; logs are in ${DEMO}"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
