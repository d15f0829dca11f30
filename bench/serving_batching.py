"""Dynamic batching and admission control on the example model, with real load on loopback.

    .venv/bin/python bench/serving_batching.py [--duration-s 3] [--p99-target-ms 100]
        [--executor thread|process] [--max-wait-ms 50] [--rounds 2] [--capacity REQ_PER_S]
        [--proxy-concurrency 32]

Prints, in one run:
- the bare model call (1 row, in-process) and the server at low load (1 connection), p50/p99;
- a wrk concurrency sweep with batching off (max_batch_size 1) and on, the best throughput
  at the p99 target of each (the capacity of that setting), and their ratio (goal >= 3x);
- overload, open loop (bench/openloop, a Go program), for batching off and on: 1x and 2x the
  capacity of that setting offered on a fixed schedule to three servers: "limited" (queue 64
  and ``--max-wait-ms``, 50 by default), "proxied" (the same server behind the queue proxy,
  serving/queueproxy, on the same CPUs: ``--proxy-concurrency`` requests at the server, twice
  that waiting, ``--max-wait-ms`` at most) and "unlimited" (a queue that never fills; only
  the 10 s deadline). For each: the 2xx p99 measured by the client, the 2xx per second and
  the 429 share. "Bounded" means: the 2xx p99 at 2x is at most BOUND_FACTOR times the 2xx
  p99 at 1x; the unlimited server, measured in the same run, is the baseline.
  ``--capacity`` skips the sweep (batching on only).

With two or more CPUs the servers run on the first half and wrk and the generator on the
rest (``taskset``), so neither side's work delays the other's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import serving_common as common

from serving.runtimes import load_model

OPENLOOP_SRC = Path(__file__).with_name("openloop")
BOUND_FACTOR = 2.0
WARM_CONNS = 512
"""Keep-alive connections open before each overload run, as a proxy in front keeps a pool: enough
for 2x the batching-on capacity at the latencies measured. With 128, the generator opened
hundreds of connections in a run's first second, and that burst, not the steady state, set the
run's p99 (first-second p99 ~500 ms, later seconds 120-170 ms, for the proxied server at 2x)."""
SERVER_CPUS, CLIENT_CPUS = common.cpu_split()
OFF = ["--max-batch-size", "1"]
ON = ["--max-batch-size", "32", "--batch-timeout-ms", "2"]

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) codes = {} end
function response(status, headers, body) codes[status] = (codes[status] or 0) + 1 end
function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("codes")) do total[tostring(k)] = (total[tostring(k)] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(total) do table.insert(parts, string.format('"%%s": %%d', k, v)) end
  io.write(string.format('RESULT {"duration_us": %%d, "requests": %%d, "p50_us": %%d, "p99_us": %%d, ' ..
    '"errors": %%d, "codes": {%%s}}\\n', summary.duration, summary.requests, latency:percentile(50),
    latency:percentile(99), summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout, table.concat(parts, ", ")))
end
"""


@dataclass
class Run:
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    codes: dict[str, int]
    errors: int

    def line(self) -> str:
        return (f"  c={self.connections:4d}  {self.rps:8.0f} req/s  p50 {self.p50_ms:7.2f} ms  "
                f"p99 {self.p99_ms:7.2f} ms  codes {self.codes}  socket errors {self.errors}")


@dataclass
class Load:
    """One open-loop run: the offered rate and the latencies (ms, sorted) by HTTP status."""

    rate: float
    offered: int
    latencies_ms: dict[int, list[float]]
    p99_ms_by_second: dict[str, dict[str, float]]

    def share(self, status: int) -> float:
        return len(self.latencies_ms.get(status, [])) / max(1, self.offered)

    @property
    def p99_ok_ms(self) -> float:
        ok = self.latencies_ms.get(200, [])
        return float(np.percentile(ok, 99)) if ok else float("nan")

    def line(self) -> str:
        parts = [f"{k}: {len(v)} (p50 {np.percentile(v, 50):.1f} p99 {np.percentile(v, 99):.1f} ms)"
                 for k, v in sorted(self.latencies_ms.items())]
        by_second = ", ".join(f"{float(v['200']):.0f}" for _, v in sorted(
            self.p99_ms_by_second.items(), key=lambda kv: int(kv[0])) if "200" in v)
        return f"offered {self.rate:6.0f} req/s: {', '.join(parts)}; 2xx p99 by second [{by_second}] ms"


def wrk(url: str, connections: int, duration_s: float, script: Path) -> Run:
    threads = min(2, connections)
    out = subprocess.run(
        [*CLIENT_CPUS, "wrk", "-t", str(threads), "-c", str(connections),
         "-d", f"{max(1, round(duration_s))}s", "--timeout", "10s", "-s", str(script),
         f"{url}/v1/models/iris:predict"],
        capture_output=True, text=True, check=True).stdout
    doc: dict[str, Any] = json.loads(out.split("RESULT ", 1)[1])
    ok = doc["codes"].get("200", 0)
    return Run(connections, doc["requests"] / (doc["duration_us"] / 1e6), doc["p50_us"] / 1e3,
               doc["p99_us"] / 1e3, doc["codes"], doc["errors"] + doc["requests"] - ok - sum(
                   v for k, v in doc["codes"].items() if k != "200"))


def bare_model(repo: Path, calls: int = 500) -> tuple[float, float]:
    model = load_model(repo / "iris" / "1")
    x = np.asarray([common.ROW], dtype=np.float32)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        model.predict(x)
        times.append(time.perf_counter() - t0)
    p50, p99 = np.percentile(times, [50, 99]) * 1e3
    return float(p50), float(p99)


def best_at_target(runs: list[Run], p99_target_ms: float) -> Run | None:
    ok = [r for r in runs if r.p99_ms <= p99_target_ms and set(r.codes) == {"200"} and not r.errors]
    return max(ok, key=lambda r: r.rps, default=None)


def mean_ms(replica: common.Replica, family: str) -> float:
    total = replica.metric(rf"{family}_sum\{{.*\}}")
    count = replica.metric(rf"{family}_count\{{.*\}}")
    return total / count * 1e3


def build_openloop() -> Path:
    """Build the Go open-loop generator (bench/openloop) into the cache."""
    return common.go_build(OPENLOOP_SRC)


def openloop(generator: Path, url: str, rate: float, duration_s: float, *, max_conns: int = 2000,
             warm_conns: int = 0) -> Load:
    """Offer ``rate`` req/s on a fixed schedule (bench/openloop) and summarize."""
    out = subprocess.run(
        [*CLIENT_CPUS, str(generator), "-url", f"{url}/v1/models/iris:predict", "-body", common.BODY,
         "-rate", f"{rate:.1f}", "-duration", f"{duration_s}s", "-max-conns", str(max_conns),
         "-warm-conns", str(warm_conns)],
        capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed (exit {out.returncode}): {out.stderr.strip()}")
    doc = json.loads(out.stdout)
    latencies = {int(k): sorted(v) for k, v in doc["latencies_ms"].items()}
    return Load(rate, doc["offered"], latencies, doc["p99_ms_by_second"])


def overload(args: argparse.Namespace, repo: Path, stack: contextlib.ExitStack, *, name: str,
             batching: list[str], capacity: float) -> None:
    """1x and 2x the capacity, open loop, against the same server with and without admission control.

    Both servers run batching as in the sweep; "limited" adds the admission limits, "unlimited"
    has a queue too long to fill and no wait budget but the 10 s deadline. Runs interleave, so
    machine load drifts evenly; each figure is the median over the rounds.
    """
    batching = [*batching, "--workers", str(args.workers), "--executor", args.executor]
    limited = ["--max-queue-size", "64", "--max-wait-ms", str(args.max_wait_ms)]
    replicas = {
        "limited": common.start(repo, *batching, *limited, prefix=SERVER_CPUS),
        "unlimited": common.start(repo, *batching, "--max-queue-size", "100000", prefix=SERVER_CPUS),
        "proxied": common.start(repo, *batching, *limited, prefix=SERVER_CPUS),
    }
    for r in replicas.values():
        stack.callback(r.kill)
    # The queue proxy shares the server's CPUs, as a sidecar shares the pod's.
    px = common.start_proxy(args.queueproxy, replicas["proxied"].url, "-concurrency",
                            str(args.proxy_concurrency), "-queue", str(2 * args.proxy_concurrency),
                            "-max-wait", f"{args.max_wait_ms:g}ms", prefix=SERVER_CPUS)
    stack.callback(px.kill)
    urls = {"limited": replicas["limited"].url, "unlimited": replicas["unlimited"].url, "proxied": px.url}
    loads: dict[tuple[str, int], list[Load]] = {}
    for _ in range(args.rounds):
        for mult in (1, 2):
            for server, url in urls.items():
                load = openloop(args.generator, url, mult * capacity, args.duration_s, warm_conns=WARM_CONNS)
                loads.setdefault((server, mult), []).append(load)
                print(f"  {server:9s} {mult}x  {load.line()}")
    px.kill()
    for r in replicas.values():
        r.stop()
    p99 = {key: float(np.median([ld.p99_ok_ms for ld in runs])) for key, runs in loads.items()}
    share = {key: float(np.median([ld.share(429) for ld in runs])) for key, runs in loads.items()}
    goodput = {key: float(np.median([len(ld.latencies_ms.get(200, [])) / args.duration_s for ld in runs]))
               for key, runs in loads.items()}
    print(f"overload, {name} ({args.executor} executor; capacity {capacity:.0f} req/s at p99 <= "
          f"{args.p99_target_ms:.0f} ms; admission limit {args.max_wait_ms:.0f} ms; queue proxy concurrency "
          f"{args.proxy_concurrency}; medians of {args.rounds} rounds):")
    for server in urls:
        ratio = p99[(server, 2)] / p99[(server, 1)]
        print(f"  {server:9s} 2xx p99 at 1x {p99[(server, 1)]:8.1f} ms, at 2x {p99[(server, 2)]:8.1f} ms "
              f"(2x/1x {ratio:5.2f}); 2xx answered per offered second at 1x {goodput[(server, 1)]:5.0f}, "
              f"at 2x {goodput[(server, 2)]:5.0f}; "
              f"429 share at 2x {share[(server, 2)]:.0%}")
    for server in ("limited", "proxied"):
        ok = p99[(server, 2)] <= BOUND_FACTOR * p99[(server, 1)]
        print(f"bounded, {server} (2xx p99 at 2x <= {BOUND_FACTOR:.0f}x its p99 at 1x): "
              f"{'yes' if ok else 'NO'}; vs unlimited at 2x: {p99[(server, 2)]:.1f} vs "
              f"{p99[('unlimited', 2)]:.1f} ms ({p99[('unlimited', 2)] / p99[(server, 2)]:.1f}x lower)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration-s", type=int, default=3)
    p.add_argument("--p99-target-ms", type=float, default=100.0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--executor", choices=["thread", "process"], default="thread")
    p.add_argument("--max-wait-ms", type=float, default=50.0, help="the limited server's admission budget")
    p.add_argument("--capacity", type=float, help="skip the sweep; overload against this capacity (req/s)")
    p.add_argument("--rounds", type=int, default=2, help="overload rounds (medians are reported)")
    p.add_argument("--proxy-concurrency", type=int, default=32,
                   help="the queue proxy's -concurrency (its queue is twice that)")
    args = p.parse_args()
    args.generator = build_openloop()
    args.queueproxy = common.go_build(common.QUEUEPROXY_SRC)
    print(f"CPUs: server {' '.join(SERVER_CPUS) or 'unpinned'}, load generators "
          f"{' '.join(CLIENT_CPUS) or 'unpinned'}")
    repo = common.example_repo()
    script = Path(tempfile.mkdtemp()) / "predict.lua"
    script.write_text(WRK_SCRIPT % common.BODY)

    bare = bare_model(repo)
    print(f"bare model call (1 row, in-process): p50 {bare[0]:.2f} ms  p99 {bare[1]:.2f} ms")

    with contextlib.ExitStack() as stack:
        return measure(args, repo, script, stack, bare)


def measure(args: argparse.Namespace, repo: Path, script: Path, stack: contextlib.ExitStack,
            bare: tuple[float, float]) -> int:
    """Both servers up at once; each concurrency runs off then on, so machine load drifts evenly."""
    conns = [1, 4, 8, 16, 32, 64]
    if args.capacity:
        overload(args, repo, stack, name="batching on", batching=ON, capacity=args.capacity)
        return 0
    common_args = ["--workers", str(args.workers), "--executor", args.executor, "--max-queue-size", "1024"]
    off = common.start(repo, *OFF, *common_args, prefix=SERVER_CPUS)
    stack.callback(off.kill)
    reported = off.metric(r"inference_startup_seconds\{.*\}")
    print(f"start-up (spawn to ready): {off.spawn_to_ready_s:.2f} s; server-reported "
          f"inference_startup_seconds {reported:.2f} s")
    on = common.start(repo, *ON, *common_args, prefix=SERVER_CPUS)
    stack.callback(on.kill)
    runs_off, runs_on = [], []
    for c in conns:
        runs_off.append(wrk(off.url, c, args.duration_s, script))
        print(f"off {runs_off[-1].line()}")
        if c == 1:
            server_mean_ms, model_mean_ms = mean_ms(off, "inference_request_duration_seconds"), mean_ms(
                off, "inference_model_seconds")
        runs_on.append(wrk(on.url, c, args.duration_s, script))
        print(f"on  {runs_on[-1].line()}")
    low_off, low_on = runs_off[0], runs_on[0]
    print(f"server at low load (1 connection), client-side: batching off p50 {low_off.p50_ms:.2f} ms "
          f"p99 {low_off.p99_ms:.2f} ms, batching on p50 {low_on.p50_ms:.2f} ms p99 {low_on.p99_ms:.2f} ms; "
          f"bare call measured before: p50 {bare[0]:.2f} ms p99 {bare[1]:.2f} ms")
    print(f"same requests, server-side means (off, c=1): request {server_mean_ms:.2f} ms, model call "
          f"{model_mean_ms:.2f} ms -> server overhead {server_mean_ms - model_mean_ms:.2f} ms per request")
    off.stop()
    on.stop()
    b_off, b_on = best_at_target(runs_off, args.p99_target_ms), best_at_target(runs_on, args.p99_target_ms)
    if b_off and b_on:
        print(f"best throughput at p99 <= {args.p99_target_ms:.0f} ms: "
              f"off {b_off.rps:.0f} req/s (c={b_off.connections}), on {b_on.rps:.0f} req/s "
              f"(c={b_on.connections}); ratio {b_on.rps / b_off.rps:.2f}x")
    else:
        print(f"no run met p99 <= {args.p99_target_ms:.0f} ms: off {b_off}, on {b_on}")

    # Batching off is bound by the model, behind the admission point; batching on is bound by the
    # event loop (HTTP and JSON) in front of it, where a refusal still costs about half an answer.
    for name, flags, best in (("batching off", OFF, b_off), ("batching on", ON, b_on)):
        if best is not None:
            overload(args, repo, stack, name=name, batching=flags, capacity=best.rps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
