"""Scale-down under steady load: SIGTERM one of two replicas behind a local balancer.

    .venv/bin/python bench/serving_drain.py [--rate 100] [--before-s 3] [--after-s 5] [--executor process]

The balancer (in this process, on loopback) round-robins over the replicas whose ``/ready``
answers 200, polling every 100 ms, as an endpoints controller and kube-proxy would; it never
retries. An open-loop client sends a steady rate through it. One replica gets SIGTERM mid-run;
the figures are the requests lost (anything but 200), how long that replica took to exit and
how many requests it still answered after the signal. A baseline run in the same process
kills the replica with SIGKILL instead, to show what the drain protects against.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import signal
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
import serving_common as common
from aiohttp import web

READY_POLL_S = 0.1


@dataclass
class Backend:
    replica: common.Replica
    ready: bool = True
    served: int = 0
    served_after_signal: int = 0
    signalled: bool = False


@dataclass
class Balancer:
    backends: list[Backend]
    session: aiohttp.ClientSession
    _rr: itertools.count[int] = field(default_factory=itertools.count)

    def pick(self) -> Backend | None:
        ready = [b for b in self.backends if b.ready]
        return ready[next(self._rr) % len(ready)] if ready else None

    async def handle(self, request: web.Request) -> web.Response:
        backend = self.pick()
        if backend is None:
            return web.json_response({"error": "no ready backend"}, status=503)
        body = await request.read()
        url = f"{backend.replica.url}{request.path}"
        try:
            async with self.session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                payload = await r.read()
                status = r.status
        except aiohttp.ClientError as e:
            return web.json_response({"error": f"upstream: {type(e).__name__}"}, status=502)
        backend.served += 1
        backend.served_after_signal += backend.signalled
        return web.Response(body=payload, status=status, content_type="application/json")

    async def watch(self) -> None:
        while True:
            for b in self.backends:
                try:
                    async with self.session.get(f"{b.replica.url}/ready") as r:
                        b.ready = r.status == 200
                except aiohttp.ClientError:
                    b.ready = False
            await asyncio.sleep(READY_POLL_S)  # the probe period


async def load(url: str, rate: float, duration_s: float, outcomes: Counter[str]) -> None:
    """Open loop: one request every 1/rate seconds, whatever the answers do."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def one() -> None:
            try:
                async with session.post(f"{url}/v1/models/iris:predict", data=common.BODY) as r:
                    await r.read()
                    outcomes[str(r.status)] += 1
            except aiohttp.ClientError as e:
                outcomes[type(e).__name__] += 1

        tasks = []
        start = time.monotonic()
        for i in itertools.count():
            at = start + i / rate
            if at - start >= duration_s:
                break
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)


async def scenario(sig: signal.Signals, args: argparse.Namespace) -> None:
    repo = common.example_repo()
    flags = ["--drain-delay-s", str(args.drain_delay_s), "--grace-period-s", "20",
             "--executor", args.executor]
    replicas = [common.start(repo, *flags) for _ in range(2)]
    print(f"replicas ready; spawn-to-ready {', '.join(f'{r.spawn_to_ready_s:.2f} s' for r in replicas)}")
    try:
        await run(replicas, sig, args)
    finally:
        for r in replicas:
            r.kill()


async def run(replicas: list[common.Replica], sig: signal.Signals, args: argparse.Namespace) -> None:
    async with aiohttp.ClientSession() as session:
        balancer = Balancer([Backend(r) for r in replicas], session)
        app = web.Application()
        app.router.add_post("/v1/models/{tail:.*}", balancer.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        watcher = asyncio.create_task(balancer.watch())
        outcomes: Counter[str] = Counter()
        traffic = asyncio.create_task(load(url, args.rate, args.before_s + args.after_s, outcomes))
        await asyncio.sleep(args.before_s)
        victim = balancer.backends[0]
        signalled_at = time.monotonic()
        victim.signalled = True
        victim.replica.proc.send_signal(sig)
        rc = await asyncio.to_thread(victim.replica.proc.wait, 30)
        exit_s = time.monotonic() - signalled_at
        await traffic
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await runner.cleanup()
    replicas[1].stop()
    sent = sum(outcomes.values())
    lost = sent - outcomes.get("200", 0)
    print(f"{sig.name}: sent {sent} at {args.rate:.0f} req/s, lost {lost} ({dict(outcomes)}); "
          f"replica exited rc={rc} {exit_s:.2f} s after the signal, answered "
          f"{victim.served_after_signal} requests after it")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--before-s", type=float, default=3.0)
    p.add_argument("--after-s", type=float, default=5.0)
    p.add_argument("--drain-delay-s", type=float, default=1.0)
    p.add_argument("--executor", choices=["thread", "process"], default="thread")
    args = p.parse_args()
    asyncio.run(scenario(signal.SIGTERM, args))
    asyncio.run(scenario(signal.SIGKILL, args))  # baseline: no drain
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
