"""The three dashboards: GPU fleet, serving, autoscaler.

Metric names are the docs/design.md contract (``gpu_*`` from gpu_exporter, ``inference_*`` from the
serving pods or the exporter's traffic presets, ``prescale_*`` from the forecaster) plus
kube-state-metrics for Deployment replicas. Per-GPU values use ``max by (node, gpu)``: a GPU
shared by several containers is exported once per holder with the same value.
"""

from __future__ import annotations

from dashboards.spec import Dashboard, Panel, Query, Row, Variable

RATE = "$__rate_interval"
NODE = 'node=~"$node"'
SERVING = 'namespace=~"$namespace", pod=~"$deployment-.*"'
TARGET = 'namespace=~"$namespace", target=~"$target"'


def _per_gpu(metric: str, title: str, unit: str, description: str, max_value: float | None = None) -> Panel:
    return Panel(title, (Query(f"max by (node, gpu) ({metric}{{{NODE}}})", "{{node}} GPU {{gpu}}"),),
                 unit, description=description, min_value=0.0 if max_value else None, max_value=max_value)


GPU_FLEET = Dashboard(
    uid="prescale-gpu-fleet",
    title="prescale / GPU fleet",
    description="Utilization, memory, power, temperature, throttling and errors of every GPU.",
    variables=(
        Variable("node", "Node", "label_values(gpu_info, node)"),
        Variable("model", "GPU model", "label_values(gpu_info{node=~\"$node\"}, model)"),
    ),
    rows=(
        Row("Fleet", (
            Panel("GPUs", (Query(f'count(gpu_info{{{NODE}, model=~"$model"}})'),), kind="stat", width=4,
                  height=4, description="GPUs and MIG instances the exporters report."),
            Panel("GPUs lost", (Query(f"count(gpu_up{{{NODE}}} == 0) or vector(0)"),), kind="stat",
                  width=4, height=4, description="Known GPUs the exporter can no longer read."),
            Panel("Mean utilization", (Query(f"avg(gpu_utilization_ratio{{{NODE}}})"),), "percentunit",
                  kind="stat", width=4, height=4),
            Panel("Memory used", (Query(f"sum(max by (node, gpu) (gpu_memory_used_bytes{{{NODE}}}))"
                                        f" / sum(max by (node, gpu) (gpu_memory_total_bytes{{{NODE}}}))"),),
                  "percentunit", kind="stat", width=4, height=4),
            Panel("Power draw", (Query(f"sum(max by (node, gpu) (gpu_power_usage_watts{{{NODE}}}))"),),
                  "watt", kind="stat", width=4, height=4),
            Panel("XID errors (range)", (Query(
                f"sum(increase(gpu_xid_errors_total{{{NODE}}}[$__range])) or vector(0)"),), kind="stat",
                  width=4, height=4),
        )),
        Row("Activity", (
            _per_gpu("gpu_utilization_ratio", "GPU utilization", "percentunit",
                     "Fraction of time a kernel ran (NVML; coarse: one busy SM counts).", max_value=1.0),
            _per_gpu("gpu_sm_active_ratio", "SM activity", "percentunit",
                     "Fraction of cycles an SM had a warp assigned (Hopper GPM); the honest busy signal.",
                     max_value=1.0),
            _per_gpu("gpu_tensor_active_ratio", "Tensor pipe activity", "percentunit",
                     "Fraction of cycles a tensor pipe was active.", max_value=1.0),
            _per_gpu("gpu_dram_active_ratio", "DRAM bandwidth used", "percentunit",
                     "Fraction of peak memory bandwidth.", max_value=1.0),
        )),
        Row("Memory and power", (
            Panel("Memory used", (
                Query(f"max by (node, gpu) (gpu_memory_used_bytes{{{NODE}}})", "{{node}} GPU {{gpu}}"),
                Query(f"max by (node) (gpu_memory_total_bytes{{{NODE}}})", "capacity {{node}}"),
            ), "bytes"),
            Panel("Power", (
                Query(f"max by (node, gpu) (gpu_power_usage_watts{{{NODE}}})", "{{node}} GPU {{gpu}}"),
                Query(f"max by (node) (gpu_power_limit_watts{{{NODE}}})", "limit {{node}}"),
            ), "watt"),
            Panel("GPU temperature", (
                Query(f"max by (node, gpu) (gpu_temperature_celsius{{{NODE}}})", "{{node}} GPU {{gpu}}"),),
                  "celsius"),
            Panel("Memory (HBM) temperature", (
                Query(f"max by (node, gpu) (gpu_memory_temperature_celsius{{{NODE}}})",
                      "{{node}} GPU {{gpu}}"),), "celsius"),
        )),
        Row("Health", (
            Panel("Throttle reasons active", (Query(
                f'sum by (reason) (max by (node, gpu, reason) (gpu_clock_event_active{{{NODE}, '
                f'reason!="gpu_idle"}}))', "{{reason}}"),), stacked=True,
                  description="GPUs per active clock-event reason; sw_power_cap is normal at full load."),
            Panel("XID errors", (Query(
                f"sum by (node, gpu, xid) (increase(gpu_xid_errors_total{{{NODE}}}[{RATE}]))",
                "{{node}} GPU {{gpu}} XID {{xid}}"),), kind="bars"),
            Panel("ECC and row remapping", (
                Query(f"sum by (node, gpu) (increase(gpu_ecc_uncorrected_errors_total{{{NODE}}}[{RATE}]))",
                      "uncorrectable ECC {{node}} GPU {{gpu}}"),
                Query(f"max by (node, gpu) (gpu_row_remap_pending{{{NODE}}})",
                      "remap pending {{node}} GPU {{gpu}}"),
                Query(f"max by (node, gpu) (gpu_row_remap_failed{{{NODE}}})",
                      "remap failed {{node}} GPU {{gpu}}"),
            )),
            Panel("Exporter freshness", (
                Query("max by (instance) (gpu_exporter_snapshot_age_seconds)", "{{instance}}"),
            ), "s", description="Seconds since each exporter last read its GPUs."),
        )),
    ),
)

def _ratio(code: str) -> str:
    """Share of the deployment's requests with ``code``; ``or vector(0)`` shows 0, not "no data"."""
    return (f"(sum(rate(inference_requests_total{{{SERVING}, {code}}}[{RATE}])) or vector(0))"
            f" / sum(rate(inference_requests_total{{{SERVING}}}[{RATE}]))")


_LATENCY = f"sum by (le) (rate(inference_request_duration_seconds_bucket{{{SERVING}}}[{RATE}]))"

SERVING_DASHBOARD = Dashboard(
    uid="prescale-serving",
    title="prescale / serving",
    description="Traffic, latency, queueing, batching, errors and replicas of one model deployment.",
    variables=(
        Variable("namespace", "Namespace", "label_values(inference_requests_total, namespace)"),
        Variable("deployment", "Deployment",
                 'label_values(kube_deployment_spec_replicas{namespace=~"$namespace"}, deployment)',
                 include_all=False, multi=False),
    ),
    rows=(
        Row("Traffic", (
            Panel("Requests per second", (Query(
                f"sum by (code) (rate(inference_requests_total{{{SERVING}}}[{RATE}]))", "{{code}}"),),
                  "reqps", stacked=True),
            Panel("Latency percentiles", (
                Query(f"histogram_quantile(0.5, {_LATENCY})", "p50"),
                Query(f"histogram_quantile(0.95, {_LATENCY})", "p95"),
                Query(f"histogram_quantile(0.99, {_LATENCY})", "p99"),
            ), "s", description="Answered (2xx) requests, arrival to answer."),
            Panel("Error ratio", (
                Query(_ratio('code=~"5.."'), "5xx"),
                Query(_ratio('code="429"'), "429 (queue full)"),
            ), "percentunit", description="Share of requests answered with the code; 0 when none."),
            Panel("Tokens per second", (
                Query(f"sum(rate(inference_prompt_tokens_total{{{SERVING}}}[{RATE}]))", "prompt"),
                Query(f"sum(rate(inference_generation_tokens_total{{{SERVING}}}[{RATE}]))", "generated"),
            ), "short", description="LLM servers only (vLLM, TGI)."),
        )),
        Row("Queueing and batching", (
            Panel("Queue depth", (Query(f"sum by (pod) (inference_queue_depth{{{SERVING}}})", "{{pod}}"),),
                  stacked=True),
            Panel("In-flight requests", (Query(
                f"sum by (pod) (inference_inflight_requests{{{SERVING}}})", "{{pod}}"),), stacked=True),
            Panel("Batch size", (
                Query(f"sum(rate(inference_batch_size_sum{{{SERVING}}}[{RATE}]))"
                      f" / sum(rate(inference_batch_size_count{{{SERVING}}}[{RATE}]))", "mean"),
                Query("histogram_quantile(0.95, sum by (le) (rate(inference_batch_size_bucket"
                      f"{{{SERVING}}}[{RATE}])))", "p95"),
            )),
            Panel("Replicas", (
                Query('sum(kube_deployment_spec_replicas{namespace=~"$namespace", deployment="$deployment"})',
                      "desired"),
                Query('sum(kube_deployment_status_replicas_ready{namespace=~"$namespace", '
                      'deployment="$deployment"})', "ready"),
                Query(f"count(inference_queue_depth{{{SERVING}}})", "reporting metrics"),
            )),
        )),
    ),
)

_DEMAND = f'sum(rate(inference_requests_total{{namespace=~"$namespace", pod=~"$target-.*"}}[{RATE}]))'
"""Requests/s of the target's pods (pod names start with the Deployment's name)."""
_FORECAST = ('max by (quantile) (prescale_forecast_requests_per_second{%s, quantile="%s", '
             'horizon_seconds=~"$horizon"})')

AUTOSCALER = Dashboard(
    uid="prescale-autoscaler",
    title="prescale / autoscaler",
    description="Demand against the forecast, replicas, learned capacity and lead time, model quality.",
    variables=(
        Variable("namespace", "Namespace", "label_values(prescale_desired_replicas, namespace)"),
        Variable("target", "Target",
                 'label_values(prescale_desired_replicas{namespace=~"$namespace"}, target)',
                 include_all=False, multi=False),
        Variable("horizon", "Horizon (s)",
                 'label_values(prescale_forecast_requests_per_second{namespace=~"$namespace", '
                 'target=~"$target"}, horizon_seconds)', include_all=False, multi=False),
    ),
    rows=(
        Row("Demand and replicas", (
            Panel("Demand vs forecast", (
                Query(f"max(prescale_observed_demand_requests_per_second{{{TARGET}}})", "observed"),
                Query(_FORECAST % (TARGET, "0.5"), "forecast p50"),
                Query(_FORECAST % (TARGET, "0.8"), "forecast p80"),
                Query(_FORECAST % (TARGET, "0.99"), "forecast p99"),
            ), "reqps", band=("forecast p80", "forecast p99"),
                  description="Observed requests/s against the forecast peak over the next $horizon seconds; "
                              "the shaded band runs from the 80th to the 99th percentile."),
            Panel("Desired vs ready replicas", (
                Query(f"max(prescale_desired_replicas{{{TARGET}}})", "desired (prescale)"),
                Query('sum(kube_deployment_spec_replicas{namespace=~"$namespace", deployment=~"$target"})',
                      "spec"),
                Query('sum(kube_deployment_status_replicas_ready{namespace=~"$namespace", '
                      'deployment=~"$target"})', "ready"),
            )),
            Panel("Capacity per replica", (
                Query(f"max(prescale_capacity_per_replica{{{TARGET}}})", "learned capacity"),
                Query(f"{_DEMAND} / sum(kube_deployment_status_replicas_ready{{namespace=~\"$namespace\", "
                      'deployment=~"$target"})', "load per ready replica"),
            ), "reqps"),
            Panel("Lead time", (Query(f"max(prescale_lead_time_seconds{{{TARGET}}})", "lead time"),), "s",
                  description="Scale-up request to pods Ready, as the controller measures it."),
        )),
        Row("Model quality and decisions", (
            Panel("Forecast error", (Query(f"max(prescale_forecast_error_ratio{{{TARGET}}})", "error"),),
                  "percentunit", width=8),
            Panel("Interval coverage", (Query(
                f"max(prescale_interval_coverage_ratio{{{TARGET}}})", "coverage"),), "percentunit",
                  width=8, min_value=0.0, max_value=1.0,
                  description="Share of observed demand inside the forecast band."),
            Panel("Decisions by reason", (Query(
                f"sum by (reason) (increase(prescale_decisions_total{{{TARGET}}}[{RATE}]))", "{{reason}}"),),
                  kind="bars", stacked=True, width=8),
            Panel("Free GPUs per node", (Query(
                "count by (node) (gpu_info) - (count by (node) (count by (node, uuid) (gpu_allocation_info))"
                " or count by (node) (gpu_info) * 0)", "{{node}}"),), stacked=True, width=12,
                  description="GPUs no container holds: the room new replicas can start in."),
            Panel("Node-pool headroom requested", (Query(
                f"sum(prescale_node_headroom_gpus{{{TARGET}}})", "extra GPUs asked of the pool"),),
                  width=12, description="GPUs the controller provisions ahead of the forecast."),
        )),
    ),
)

ALL: tuple[Dashboard, ...] = (GPU_FLEET, SERVING_DASHBOARD, AUTOSCALER)
