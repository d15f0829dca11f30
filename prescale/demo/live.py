"""The cluster demo: a day of a real trace in compressed time through the whole stack.

Two Deployments receive the same demand: one under the native HPA reading the adapter's
external metric, one under a PredictiveAutoscaler. Pods are KWOK pods on GPU nodes that
become Ready a pod lead time after they are created.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml
from aiohttp import web

from forecaster.backtest.trace import demand_per_step, load_trace
from prescale.demo import live_stack as ls
from prescale.demo import offline, report
from prescale.demo.clock import CompressedClock
from prescale.demo.score import Sample, Track, write_samples
from prescale.demo.traffic import DemandSource, Target, TrafficCollector, make_app
from prescale.stack import cluster as cluster_mod
from prescale.stack import netns, procs
from prescale.stack import prometheus as prom
from prescale.stack.errors import StackError

log = logging.getLogger(__name__)
HPA_TARGET = 0.7
SAMPLE_EVERY_WALL_S = 0.5
DECIDE_EVERY_WALL_S = 1
"""The controller's reconcile interval and the HPA's sync period, in wall seconds: in trace
time both decide once per compression x this, which the cadence-matched replay uses."""


@dataclass(frozen=True)
class Plan:
    """Everything derived from the options before anything starts."""

    window: offline.DemoWindow
    demand: DemandSource
    factor: float
    capacity_rps: float
    max_replicas: int
    initial_replicas: int
    work: Path


MIN_DECISIONS = 10
"""The replayed day must hold at least this many decisions of the live cluster."""


def make_plan(args: argparse.Namespace) -> Plan:
    """Everything derived from the options; raises DemoError before anything starts."""
    trace = load_trace(args.trace)
    window = offline.cut_window(trace, args.day, args.history_days)
    decisions = args.day_minutes * 60.0 / DECIDE_EVERY_WALL_S * window.day_s / 86400.0
    if decisions < MIN_DECISIONS:
        least = MIN_DECISIONS * DECIDE_EVERY_WALL_S / 60.0 * 86400.0 / window.day_s
        raise offline.DemoError(
            f"--day-minutes={args.day_minutes:g} leaves {decisions:.1f} decisions (one per "
            f"{DECIDE_EVERY_WALL_S} s of wall time) for the replayed day; use --day-minutes >= {least:.2f}")
    step = window.trace.bucket_s
    lam = demand_per_step(window.trace, step)
    capacity = float(lam.max()) / args.peak_replicas
    first = int(window.score_from_s // step)
    start_need = math.ceil(float(lam[first]) / (capacity * HPA_TARGET))
    return Plan(window=window, demand=DemandSource(lam, step), factor=86400.0 / (args.day_minutes * 60.0),
                capacity_rps=capacity, max_replicas=3 * args.peak_replicas,
                initial_replicas=max(1, start_need), work=(args.out / "run").resolve())


def _history(plan: Plan, now_unix: float, upto_sim_s: float) -> list[tuple[float, float]]:
    """Demand before trace time ``upto_sim_s``, laid out in compressed wall time ending now."""
    step = plan.demand.step_s
    return [(now_unix - (upto_sim_s - i * step) / plan.factor, float(plan.demand.demand_rps[i]))
            for i in range(int(upto_sim_s // step))]


def _deployment_sample(c: cluster_mod.Cluster, name: str, sim_s: float, demand: float) -> Sample:
    d = c.get(f"/apis/apps/v1/namespaces/{ls.NAMESPACE}/deployments/{name}")
    st = d.get("status", {})
    return Sample(sim_s, demand, ready=int(st.get("readyReplicas", 0)), held=int(st.get("replicas", 0)),
                  desired=int(d["spec"]["replicas"]))


def _band(c: cluster_mod.Cluster) -> str:
    try:
        pa = c.get(f"/apis/autoscaling.prescale.dev/v1alpha1/namespaces/{ls.NAMESPACE}"
                   f"/predictiveautoscalers/{ls.PRESCALE_DEPLOYMENT}")
    except OSError:
        return "-"
    fc = pa.get("status", {}).get("forecast", {})
    if "plannedPeakRps" not in fc:
        return "-"
    return f"{fc.get('meanPeakRps', 0):.2f}..{fc['plannedPeakRps']:.2f}"


async def _replay(c: cluster_mod.Cluster, plan: Plan, clock: CompressedClock,
                  collector: TrafficCollector) -> dict[str, Track]:
    tracks = {n: Track(n) for n in (ls.HPA_DEPLOYMENT, ls.PRESCALE_DEPLOYMENT)}
    end_sim = plan.window.score_from_s + plan.window.day_s
    last_print = -math.inf
    while (sim := clock.sim_s()) < end_sim:
        demand = collector.advance()
        samples = {n: await asyncio.to_thread(_deployment_sample, c, n, sim, demand) for n in tracks}
        for n, s in samples.items():
            tracks[n].add(s)
        if clock.elapsed_wall_s() - last_print >= 5.0:
            last_print = clock.elapsed_wall_s()
            need = math.ceil(demand / plan.capacity_rps)
            h, p = samples[ls.HPA_DEPLOYMENT], samples[ls.PRESCALE_DEPLOYMENT]
            minutes = int((sim - plan.window.score_from_s) / 60)
            sign, (hh, mm) = ("-" if minutes < 0 else ""), divmod(abs(minutes), 60)
            band = await asyncio.to_thread(_band, c)
            print(f"[{sign}{hh:02d}:{mm:02d}] demand {demand:7.2f} rps, needs {need:3d} | "
                  f"hpa ready {h.ready:3d} (asked {h.desired:3d}) | prescale ready {p.ready:3d} "
                  f"(asked {p.desired:3d}) | forecast peak {band} rps", flush=True)
        await asyncio.sleep(SAMPLE_EVERY_WALL_S)
    return tracks


LEAD_IN_WALL_S = 40.0
"""Wall seconds of traffic played before the scored day, while the parts start."""


@contextlib.asynccontextmanager
async def _serve(app: web.Application, port: int) -> Any:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield
    finally:
        await runner.cleanup()


def _settings(plan: Plan, args: argparse.Namespace) -> ls.PredictiveSettings:
    return ls.PredictiveSettings(
        capacity_rps=plan.capacity_rps, max_replicas=plan.max_replicas,
        pod_lead_s=args.pod_lead_s / plan.factor, history_s=args.history_days * 86400 / plan.factor,
        season_s=86400 / plan.factor, step_s=max(1.0, plan.demand.step_s / plan.factor),
        scale_down_delay_s=max(1.0, 120 / plan.factor), fallback_hold_s=max(1.0, 300 / plan.factor),
        miss_cost_ratio=args.miss_cost_ratio)


def _start_workloads(c: cluster_mod.Cluster, plan: Plan, args: argparse.Namespace) -> None:
    c.apply_crds(ls.CRD_FILE.read_text(), timeout_s=60.0)
    delay = args.pod_lead_s / plan.factor
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ls.NAMESPACE}},
            ls.deployment(ls.HPA_DEPLOYMENT, plan.initial_replicas, delay),
            ls.deployment(ls.PRESCALE_DEPLOYMENT, plan.initial_replicas, delay),
            ls.hpa(plan.capacity_rps, HPA_TARGET, plan.max_replicas),
            ls.predictive_autoscaler(_settings(plan, args))]
    c.apply(yaml.safe_dump_all(docs))


async def _run_stack(plan: Plan, args: argparse.Namespace, address: str,
                     stop: asyncio.Event) -> dict[str, Track]:
    cfg = cluster_mod.ClusterConfig(
        work_dir=plan.work / "cluster", address=address, apiserver_port=procs.free_port(),
        pod_ready_delay_s=args.pod_lead_s / plan.factor,
        gpu_nodes=math.ceil(2 * plan.max_replicas / 8) + 1, gpus_per_node=8,
        hpa_sync_period_s=DECIDE_EVERY_WALL_S,
        hpa_downscale_stabilization_s=max(1, round(300 / plan.factor)))
    ports = ls.Ports(*(procs.free_port() for _ in range(4)))
    lead_in_sim = LEAD_IN_WALL_S * plan.factor
    start_sim = plan.window.score_from_s - lead_in_sim
    with contextlib.ExitStack() as stack:
        print("starting the control plane (etcd, kube-apiserver, controller-manager, scheduler, KWOK)",
              flush=True)
        c = stack.enter_context(await asyncio.to_thread(cluster_mod.start, cfg))
        print("loading the demand history into Prometheus", flush=True)
        now = time.time()
        storage = plan.work / "prometheus" / "tsdb"
        await asyncio.to_thread(ls.backfill_history, storage, _history(plan, now, start_sim), ports.traffic)
        p = prom.start_prometheus(plan.work / "prometheus", ls.prometheus_config(ports), storage=storage)
        stack.callback(p.stop)
        clock = CompressedClock(plan.factor, start_sim_s=start_sim)
        collector = TrafficCollector(plan.demand, clock, [Target(ls.NAMESPACE, ls.HPA_DEPLOYMENT),
                                                          Target(ls.NAMESPACE, ls.PRESCALE_DEPLOYMENT)])
        async with _serve(make_app(collector), ports.traffic):
            logs = plan.work / "logs"
            print("starting exporter, adapter (APIService) and forecaster", flush=True)
            stack.enter_context(ls.process("prescale-exporter", ls.cli(
                "exporter", "--backend", "auto", "--address", "127.0.0.1", "--port", str(ports.exporter),
                "--no-pod-attribution", "--node-name", "gpu-node-0"), logs / "exporter.log"))
            stack.enter_context(await asyncio.to_thread(ls.adapter, c, plan.work, address, p.url))
            stack.enter_context(ls.process("prescale-forecaster", ls.cli(
                "forecaster", f"--prometheus-url={p.url}", f"--kubeconfig={c.kubeconfig}",
                "--interval", str(DECIDE_EVERY_WALL_S), "--no-leader-elect",
                "--metrics-address", f"127.0.0.1:{ports.controller}",
            ), logs / "forecaster.log"))
            await asyncio.to_thread(_start_workloads, c, plan, args)
            print(f"replaying day {args.day} of {plan.window.trace.name}: 24 h in {args.day_minutes:g} "
                  f"min (x{plan.factor:.0f}); pod lead {args.pod_lead_s:g} s = "
                  f"{args.pod_lead_s / plan.factor:.2f} s wall", flush=True)
            replay = asyncio.create_task(_replay(c, plan, clock, collector))
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({replay, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if replay not in done:
                replay.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await replay
                raise KeyboardInterrupt
            print(f"stopping everything (logs in {logs})", flush=True)
            return replay.result()
    raise AssertionError("unreachable")  # pragma: no cover - the with block returns or raises


def _summarize(plan: Plan, args: argparse.Namespace, tracks: dict[str, Track]) -> int:
    start = plan.window.score_from_s
    live = {name: t.score(plan.capacity_rps, 1, from_sim_s=start) for name, t in tracks.items()}
    rows = [report.Row("hpa (live)", *vars(live[ls.HPA_DEPLOYMENT]).values()),
            report.Row("prescale (live)", *vars(live[ls.PRESCALE_DEPLOYMENT]).values())]
    # The replay at the live cadence is what the live run should agree with; the one at the
    # replay's own step shows what deciding more often (uncompressed time) gives.
    cadence_s = plan.factor * DECIDE_EVERY_WALL_S
    replays = {step_s: offline.run(plan.window, args.peak_replicas, args.pod_lead_s, args.miss_cost_ratio,
                                   step_s=step_s, policies=("hpa", "predictive"))
               for step_s in dict.fromkeys((cadence_s, args.step_s))}
    for step_s, bt in replays.items():
        rows += offline.rows_of(bt, f" (replay {step_s:g}s)")
    replayed = replays[cadence_s].scores
    compared = agreement(cadence_s, [("hpa", live[ls.HPA_DEPLOYMENT], replayed["hpa"]),
                                     ("prescale", live[ls.PRESCALE_DEPLOYMENT], replayed["predictive"])])
    print(report.table_text(rows, baseline="hpa (live)"))
    print(compared)
    # Each policy's knob moves it along its own cost curve: compare the curves, at the live cadence.
    front = offline.sweep(plan.window, args.peak_replicas, args.pod_lead_s, step_s=cadence_s)
    print(front.summary())
    markers = [report.Marker(f"{label} (live)", live[n].under_provisioned_share, live[n].gpu_hours)
               for n, label in ((ls.HPA_DEPLOYMENT, f"hpa target {HPA_TARGET:g}"),
                                (ls.PRESCALE_DEPLOYMENT, f"prescale miss cost {args.miss_cost_ratio:g}"))]
    hours = {n: [(s.sim_s - start) / 3600 for s in t.samples if s.sim_s >= start] for n, t in tracks.items()}
    h0 = hours[ls.HPA_DEPLOYMENT]
    demand = report.Curve("demand (req/s)", h0, [s.demand_rps for s in tracks[ls.HPA_DEPLOYMENT].samples
                                                  if s.sim_s >= start])
    curves = [report.Curve(f"{label}: ready capacity", hours[n],
                           [s.ready * plan.capacity_rps for s in tracks[n].samples if s.sim_s >= start])
              for n, label in ((ls.HPA_DEPLOYMENT, "hpa"), (ls.PRESCALE_DEPLOYMENT, "prescale"))]
    plot = report.capacity_plot(demand, curves, "live run: demand and ready capacity")
    path = args.out / "report.html"
    report.write_html(path, f"prescale demo: {plan.window.trace.name}, day {args.day}", rows,
                      plots={"Live run on the local cluster": plot,
                             "Frontier at the live cadence: under-provisioning against GPU-hours":
                             report.frontier_plot(front, markers)},
                      params={"time compression": f"x{plan.factor:.0f}", "capacity per replica (rps)":
                              f"{plan.capacity_rps:.4f}", "pod lead time (s)": args.pod_lead_s,
                              "HPA target utilization": HPA_TARGET,
                              "miss cost ratio (prescale)": args.miss_cost_ratio},
                      notes=["'(live)' rows come from the cluster run; the others from prescale backtest's "
                             f"replay model on the same day, deciding every N s of trace time ('replay Ns'). "
                             f"The live run decides every {cadence_s:g} s of trace time (x{plan.factor:.0f} "
                             f"compression, {DECIDE_EVERY_WALL_S} s wall).", compared, front.summary()])
    write_samples(args.out / "samples.csv", tracks.values())
    print(f"report: {path} (every sample: {args.out / 'samples.csv'})")
    return 0


class Figures(Protocol):
    """What a live score and a replayed one share."""

    @property
    def under_provisioned_share(self) -> float: ...

    @property
    def gpu_hours(self) -> float: ...


def agreement(cadence_s: float, pairs: list[tuple[str, Figures, Figures]]) -> str:
    """How each live figure compares with the replay at the live cadence: (name, live, replayed)."""
    parts = []
    for name, a, b in pairs:
        ratio = f"{a.gpu_hours / b.gpu_hours:.2f}x" if b.gpu_hours > 0 else "-"
        parts.append(f"{name}: under-provisioned {a.under_provisioned_share:.2%} live vs "
                     f"{b.under_provisioned_share:.2%} replayed, GPU-hours {ratio} the replay's")
    return f"live against the replay at the live cadence ({cadence_s:g} s): " + "; ".join(parts)


def run(args: argparse.Namespace) -> int:
    plan = make_plan(args)
    try:
        ns = netns.enter_private()
    except StackError as e:
        print(f"prescale demo: {e}. Run 'prescale demo --no-cluster' for the in-process comparison.",
              file=sys.stderr)
        return 1
    plan.work.mkdir(parents=True, exist_ok=True)

    async def main() -> dict[str, Track]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await _run_stack(plan, args, ns.address, stop)

    try:
        tracks = asyncio.run(main())
    except KeyboardInterrupt:
        print("prescale demo: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    except StackError as e:
        print(f"prescale demo: {e}", file=sys.stderr)
        return 1
    return _summarize(plan, args, tracks)
