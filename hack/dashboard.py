#!/usr/bin/env python3
"""Writes charts/hyperpool/files/dashboard.json, the Grafana dashboard the chart ships.
Edit the panels here and run `make dashboard`; never edit the JSON by hand. The JSON is
committed so the chart needs no Python, and `make verify` regenerates it and fails on drift.
Standard library only. Usage: hack/dashboard.py [output path]."""
import json
import os
import sys

DS = {"type": "prometheus", "uid": "${datasource}"}
NS = 'namespace=~"$namespace"'


def target(expr, legend, ref):
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref, "range": True}


def panel(pid, title, desc, unit, x, y, targets, w=12, h=8, stack=False):
    return {
        "id": pid, "type": "timeseries", "title": title, "description": desc, "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit, "custom": {
            "drawStyle": "line", "lineWidth": 1, "fillOpacity": 10,
            "stacking": {"mode": "normal" if stack else "none", "group": "A"}}}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
        "targets": [target(e, l, chr(ord("A") + i)) for i, (e, l) in enumerate(targets)],
    }


panels = [
    panel(1, "Warm vs. active sandboxes per pool",
          "Warm: Ready pods waiting in the pool (hyperpool_warm_sandboxes). Active: sessions Starting or Ready.",
          "short", 0, 0, [
              (f"sum by (namespace, sandbox) (hyperpool_warm_sandboxes{{{NS}}})", "warm {{namespace}}/{{sandbox}}"),
              (f'sum by (namespace, sandbox) (hyperpool_sessions{{{NS}, phase=~"Starting|Ready"}})', "active {{namespace}}/{{sandbox}}"),
          ]),
    panel(2, "Sessions by phase", "hyperpool_sessions, summed over the selected namespaces.", "short", 12, 0, [
        (f"sum by (phase) (hyperpool_sessions{{{NS}}})", "{{phase}}"),
    ], stack=True),
    panel(3, "Bind latency by start type (p50, p99)",
          "Session created to sandbox Ready. Warm binds take milliseconds; cold ones wait for a Hyper-V VM to boot.",
          "s", 0, 8, [
              (f"histogram_quantile(0.5, sum by (le, start_type) (rate(hyperpool_bind_duration_seconds_bucket{{{NS}}}[$__rate_interval])))", "p50 {{start_type}}"),
              (f"histogram_quantile(0.99, sum by (le, start_type) (rate(hyperpool_bind_duration_seconds_bucket{{{NS}}}[$__rate_interval])))", "p99 {{start_type}}"),
          ]),
    panel(4, "Session expirations by reason", "Sessions ended by MaxLifetime or IdleTimeout, per second.", "ops", 12, 8, [
        (f"sum by (reason) (rate(hyperpool_session_expirations_total{{{NS}}}[$__rate_interval]))", "{{reason}}"),
    ], stack=True),
    panel(5, "Hyper-V VM memory by namespace", "Utility VM memory of live sandboxes, warm and bound.", "bytes", 0, 16, [
        (f"sum by (namespace) (hyperpool_vm_memory_bytes{{{NS}}})", "{{namespace}}"),
    ], stack=True),
    panel(6, "Queued sessions", "Sessions waiting for their namespace's AgentQuota, by namespace.", "short", 12, 16, [
        (f"sum by (namespace) (hyperpool_queued_sessions{{{NS}}})", "{{namespace}}"),
    ]),
    panel(7, "Sandbox pod creations by start type", "Warm: refilling pools. Cold: for a session that found no warm pod.", "ops", 0, 24, [
        (f"sum by (start_type) (rate(hyperpool_pod_creations_total{{{NS}}}[$__rate_interval]))", "{{start_type}}"),
    ], w=24),
    # Warm pools sized by demand (docs/autoscaling.md): what they serve, what they cost, and
    # what the autoscaler asks for against what the pool holds.
    panel(20, "Warm-hit ratio per pool",
          "Share of binds that took a warm sandbox (hyperpool_session_binds_total, Warm over all). An autoscaled pool aims at its spec.autoscaling.warmHitTarget.",
          "percentunit", 0, 32, [
              (f'sum by (namespace, sandbox) (rate(hyperpool_session_binds_total{{{NS}, start_type="Warm"}}[$__rate_interval])) / sum by (namespace, sandbox) (rate(hyperpool_session_binds_total{{{NS}}}[$__rate_interval]))', "{{namespace}}/{{sandbox}}"),
          ]),
    panel(21, "Idle VM memory per pool",
          "Utility VM memory held by warm (unbound) sandboxes: rate of hyperpool_idle_vm_memory_byte_seconds_total. The cost a warm pool pays for its hits.",
          "bytes", 12, 32, [
              (f"sum by (namespace, sandbox) (rate(hyperpool_idle_vm_memory_byte_seconds_total{{{NS}}}[$__rate_interval]))", "{{namespace}}/{{sandbox}}"),
          ], stack=True),
    panel(22, "Autoscaler: recommended vs. Ready warm sandboxes",
          "hyperpool_autoscale_recommended_replicas (status.autoscaling.recommendedReplicas) against hyperpool_warm_sandboxes, for pools with spec.autoscaling.",
          "short", 0, 40, [
              (f"sum by (namespace, sandbox) (hyperpool_autoscale_recommended_replicas{{{NS}}})", "recommended {{namespace}}/{{sandbox}}"),
              (f"sum by (namespace, sandbox) (hyperpool_warm_sandboxes{{{NS}}} and on (namespace, sandbox) hyperpool_autoscale_recommended_replicas)", "ready {{namespace}}/{{sandbox}}"),
          ], w=24),
    # Windows fidelity (docs/node-agent.md): what the node agents measure that the scheduler
    # and the pools' requests do not show.
    panel(30, "VMs not at their requested size per pool",
          "hyperpool_vm_size_not_applied_vms: utility VMs the node agents measured at another memory size than their pods ask for (condition VMSizeApplied False). Usually a containerd runtime handler without pod_annotations.",
          "short", 0, 48, [
              (f"sum by (namespace, sandbox) (hyperpool_vm_size_not_applied_vms{{{NS}}})", "{{namespace}}/{{sandbox}}"),
          ]),
    panel(31, "Leaked VM memory per node",
          "hyperpool_node_leaked_vm_memory_bytes from the node agents: memory of utility VMs whose pod is gone, which the scheduler does not count. Over nodeAgent.leakTaint.threshold the node is tainted PreferNoSchedule.",
          "bytes", 12, 48, [
              ("max by (instance) (hyperpool_node_leaked_vm_memory_bytes)", "{{instance}}"),
          ]),
]

dashboard = {
    "title": "hyperpool",
    "uid": "hyperpool-overview",
    "description": "Warm pools of Hyper-V-isolated Windows sandboxes: pools, sessions, bind latency, expirations, VM memory, queue.",
    "tags": ["hyperpool", "windows", "hyper-v"],
    "editable": True,
    "schemaVersion": 39,
    "version": 1,
    "refresh": "30s",
    "time": {"from": "now-6h", "to": "now"},
    "timezone": "browser",
    "annotations": {"list": []},
    "templating": {"list": [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0, "refresh": 1},
        {"name": "namespace", "label": "Namespace", "type": "query", "datasource": DS,
         "query": {"query": "label_values(hyperpool_vm_memory_bytes, namespace)", "refId": "ns"},
         "definition": "label_values(hyperpool_vm_memory_bytes, namespace)",
         "includeAll": True, "multi": True, "allValue": ".*", "current": {}, "refresh": 2, "sort": 1, "hide": 0},
    ]},
    "panels": panels,
}

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "charts", "hyperpool", "files", "dashboard.json")
with open(out, "w") as f:
    json.dump(dashboard, f, indent=2)
    f.write("\n")
