#!/usr/bin/env bash
# The end-to-end check on a real cluster with Windows nodes: `kubectl agents doctor`'s
# checklist, then `kubectl agents doctor --e2e`, which opens a session of a throwaway
# Hyper-V class, runs `cmd /c ver` and PowerShell in it, checks the VM size and the node
# agent's VM count, ends the session, waits for its pod and VM to go, and deletes what it
# created (also on failure). Both reports go to one file; the script says where.
#
#   hack/e2e-real.sh [doctor flags...]     e.g. -n agents --e2e-build 26100 --timeout 15m
#
# It uses the current kubeconfig context (KUBECONFIG, --context). The plugin is
# $KUBECTL_AGENTS, else kubectl-agents on PATH, else built from this checkout.
# Reports go to $HYPERPOOL_E2E_REPORTS (default tmp/e2e in the checkout, ignored by git).
# Exit status: 1 when a check failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPORTS=${HYPERPOOL_E2E_REPORTS:-${ROOT}/tmp/e2e}
mkdir -p "${REPORTS}"
REPORT=${REPORTS}/e2e-$(date -u +%Y%m%dT%H%M%SZ).txt

PLUGIN=${KUBECTL_AGENTS:-$(command -v kubectl-agents || true)}
if [[ -z "${PLUGIN}" ]]; then
  PLUGIN=${REPORTS}/bin/kubectl-agents
  echo "building kubectl-agents from ${ROOT} into ${PLUGIN}"
  (cd "${ROOT}" && go build -o "${PLUGIN}" ./cmd/kubectl-agents)
fi

echo "report: ${REPORT}"
{
  echo "# $("${PLUGIN}" --version), $(date -u +%FT%TZ), context $(kubectl config current-context 2>/dev/null || echo '?')"
  echo "# kubectl agents doctor $*"
} >"${REPORT}"

status=0
# pipefail: a pipeline fails when the plugin does.
if ! "${PLUGIN}" doctor "$@" 2>&1 | tee -a "${REPORT}"; then status=1; fi
echo "# kubectl agents doctor --e2e $*" | tee -a "${REPORT}"
if ! "${PLUGIN}" doctor --e2e "$@" 2>&1 | tee -a "${REPORT}"; then status=1; fi

echo
echo "report written to ${REPORT}"
exit "${status}"
