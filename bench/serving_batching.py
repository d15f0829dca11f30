"""Dynamic batching on the example model, measured with wrk on loopback.

    .venv/bin/python bench/serving_batching.py [--duration-s 3] [--p99-target-ms 100]

Prints, in one run:
- the bare model call (1 row, in-process) and the server at low load (1 connection), p50/p99;
- the best throughput at the p99 target with batching off (max_batch_size 1) and on, and
  their ratio (the goal is >= 3x);
- overload: many connections against a bounded queue; the offered rate as a multiple of the
  measured capacity, the share of 429s and the p99 (all answers, and 2xx from the server's
  own histogram).
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


def paced(script: Path, connections: int, rate: float) -> Path:
    """A copy of the script where each connection waits so the total offer is about ``rate``/s."""
    out = script.with_name(f"paced-{connections}-{rate:.0f}.lua")
    delay_ms = max(1, round(connections / rate * 1000))
    out.write_text(script.read_text() + f"\nfunction delay() return {delay_ms} end\n")
    return out


def wrk(url: str, connections: int, duration_s: float, script: Path) -> Run:
    threads = min(2, connections)
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(duration_s))}s",
         "--timeout", "10s", "-s", str(script), f"{url}/v1/models/iris:predict"],
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


def server_p99_ms(replica: common.Replica) -> float:
    """Upper bound of the 2xx p99 from the server's own histogram (a bucket boundary)."""
    counts = []
    for line in replica.metrics().splitlines():
        if line.startswith("inference_request_duration_seconds_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            counts.append((float(le), float(line.rsplit(" ", 1)[1])))
    total = counts[-1][1]
    return next(le for le, n in counts if n >= 0.99 * total) * 1e3


def overload(name: str, flags: list[str], capacity: float, *, repo: Path, script: Path,
             stack: contextlib.ExitStack, args: argparse.Namespace, queue: int = 32) -> None:
    """Offer about twice the capacity met at the p99 target, paced, against a bounded queue.

    wrk's pacing waits after each answer, so the nominal rate is set above 2x; the printed
    ratio is the measured one.
    """
    replica = common.start(repo, *flags, "--workers", str(args.workers), "--max-queue-size", str(queue))
    stack.callback(replica.kill)
    run = wrk(replica.url, 512, 2 * args.duration_s, paced(script, 512, 3 * capacity))
    answers = max(1, sum(run.codes.values()))
    print(f"overload, {name} (queue {queue}, 512 paced connections):")
    print(run.line())
    print(f"  offered {run.rps:.0f} req/s = {run.rps / capacity:.1f}x the capacity at target "
          f"({capacity:.0f} req/s); served {run.codes.get('200', 0) / (2 * args.duration_s):.0f} req/s; "
          f"429 share {run.codes.get('429', 0) / answers:.1%}; "
          f"2xx p99 (server histogram) <= {server_p99_ms(replica):.0f} ms")
    replica.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration-s", type=int, default=3)
    p.add_argument("--p99-target-ms", type=float, default=100.0)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
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
    common_args = ["--workers", str(args.workers), "--max-queue-size", "1024"]
    off = common.start(repo, "--max-batch-size", "1", *common_args)
    stack.callback(off.kill)
    reported = off.metric(r"inference_startup_seconds\{.*\}")
    print(f"start-up (spawn to ready): {off.spawn_to_ready_s:.2f} s; server-reported "
          f"inference_startup_seconds {reported:.2f} s")
    on = common.start(repo, "--max-batch-size", "32", "--batch-timeout-ms", "2", *common_args)
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

    for name, flags, best in (("batching off", ["--max-batch-size", "1"], b_off),
                              ("batching on", ["--max-batch-size", "32", "--batch-timeout-ms", "2"], b_on)):
        if best is not None:
            overload(name, flags, best.rps, repo=repo, script=script, stack=stack, args=args)
    if b_on is not None:  # baseline: the same overload with a queue too long to ever fill
        overload("batching on, NO admission control", ["--max-batch-size", "32", "--batch-timeout-ms", "2"],
                 b_on.rps, repo=repo, script=script, stack=stack, args=args, queue=100_000)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
