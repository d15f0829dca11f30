"""``prescale stack up``: start the local stack in the foreground until Ctrl-C.

The stack lives in a private network namespace owned by this process; the command prints how
to run kubectl (and anything else) inside it with ``nsenter``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import tempfile
import threading
from pathlib import Path

from prescale.stack import cluster as cluster_mod
from prescale.stack import netns
from prescale.stack import prometheus as prom
from prescale.stack.errors import StackError

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prescale stack", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    up = sub.add_parser("up", help="start the control plane and Prometheus; stop on Ctrl-C")
    up.add_argument("--work-dir", type=Path, default=None,
                    help="certificates, data, logs and kubeconfig (default: a new temporary directory)")
    up.add_argument("--gpu-nodes", type=int, default=2, help="KWOK GPU nodes to create (default 2)")
    up.add_argument("--gpus-per-node", type=int, default=8, help="nvidia.com/gpu per node (default 8)")
    up.add_argument("--pod-ready-delay-s", type=float, default=2.0,
                    help="default pod start-up delay in seconds (per pod: annotation "
                         "pod-ready.stage.kwok.x-k8s.io/delay)")
    up.add_argument("--no-prometheus", action="store_true", help="do not start Prometheus")
    sub.add_parser("check", help="say whether the binaries the stack needs are installed")
    return p


def _check() -> int:
    bin_dir = cluster_mod.default_bin_dir()
    missing = cluster_mod.missing_binaries(bin_dir)
    for tool in ("prometheus", "promtool", "prometheus-alertmanager"):
        try:
            prom.require(tool)
        except StackError:
            missing.append(tool)
    if missing:
        print(f"missing: {', '.join(missing)} (control-plane binaries expected in {bin_dir}); "
              "run scripts/setup.sh")
        return 1
    print(f"ok: control plane {cluster_mod.pinned_version()} in {bin_dir}; Prometheus and Alertmanager found")
    return 0


def _up(args: argparse.Namespace) -> int:
    for name in ("gpu_nodes", "gpus_per_node"):
        if getattr(args, name) < 1:
            print(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
            return 2
    if args.pod_ready_delay_s < 0:
        print(f"--pod-ready-delay-s must be >= 0, got {args.pod_ready_delay_s}")
        return 2
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="prescale-stack-"))
    ns = netns.enter_private()
    cfg = cluster_mod.ClusterConfig(work_dir=work, address=ns.address, gpu_nodes=args.gpu_nodes,
                                    gpus_per_node=args.gpus_per_node,
                                    pod_ready_delay_s=args.pod_ready_delay_s)
    log.info("starting the control plane", extra={"fields": {"work_dir": str(work)}})
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with cluster_mod.start(cfg) as c:
        p = None if args.no_prometheus else prom.start_prometheus(
            work / "prometheus", {"global": {"scrape_interval": "5s"}})
        enter = f"nsenter --net=/proc/{os.getpid()}/ns/net --"
        print(f"control plane {cluster_mod.pinned_version()} ready; logs in {work / 'logs'}")
        print(f"  kubectl:    {enter} {cfg.bin_dir / 'kubectl'} --kubeconfig={c.kubeconfig} get nodes")
        if p is not None:
            print(f"  prometheus: {enter} curl {p.url}/-/ready")
        print("press Ctrl-C to stop everything", flush=True)
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        finally:
            if p is not None:
                p.stop()
    print("stopped")
    return 0


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        return _check() if args.action == "check" else _up(args)
    except StackError as e:
        print(f"prescale stack: {e}")
        return 1
