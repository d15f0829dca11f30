"""``prescale``: one command that starts any part of the system.

The top level only picks the subcommand; the rest of the argument list goes to the program's
own ``main(argv) -> int``, imported lazily so that ``prescale --help`` stays fast and a part's
heavy dependencies load only when that part runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prescale import logs


@dataclass(frozen=True)
class Subcommand:
    """A subcommand: the module whose ``main(argv)`` runs it, and a one-line summary."""

    module: str
    summary: str


SUBCOMMANDS: dict[str, Subcommand] = {
    "exporter": Subcommand("gpu_exporter.cli", "GPU and inference-traffic metrics exporter (per node)"),
    "adapter": Subcommand("adapter.cli", "external/custom metrics API server for the HPA"),
    "forecaster": Subcommand("forecaster.controller.cli", "PredictiveAutoscaler controller"),
    "backtest": Subcommand("forecaster.backtest.cli", "replay a trace through HPA, KPA, oracle and prescale"),
    "serve": Subcommand("serving.cli", "the bundled model server"),
    "demo": Subcommand("prescale.demo.cli", "run the whole stack locally and compare with the HPA"),
    "stack": Subcommand("prescale.stack.cli", "start/stop the local test stack (control plane, Prometheus)"),
}

EXIT_USAGE = 2
EXIT_NOT_BUILT = 3


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="prescale",
        description="Scale GPU model serving on Kubernetes ahead of demand.",
        epilog="Run 'prescale COMMAND --help' for the options of one command.",
    )
    p.add_argument("--log-level", default="info", choices=logs.LEVELS)
    p.add_argument("--log-format", default="auto", choices=logs.FORMATS,
                   help="json (default when stderr is not a terminal) or text")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, spec in SUBCOMMANDS.items():
        sub.add_parser(name, help=spec.summary, add_help=False)
    return p


def _load(spec: Subcommand) -> Callable[[list[str]], int] | None:
    try:
        module = importlib.import_module(spec.module)
    except ModuleNotFoundError as e:
        if e.name is not None and spec.module.startswith(e.name):
            return None
        raise
    entry = getattr(module, "main", None)
    return entry if callable(entry) else None


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    # Global options come before the subcommand; everything after it belongs to the program.
    idx = next((i for i, a in enumerate(args_in) if a in SUBCOMMANDS), len(args_in))
    ns = parser.parse_args(args_in[: idx + 1])
    if ns.command is None:
        parser.print_help()
        return EXIT_USAGE
    spec = SUBCOMMANDS[ns.command]
    entry = _load(spec)
    if entry is None:
        print(f"prescale {ns.command}: not built yet ({spec.summary}).", file=sys.stderr)
        return EXIT_NOT_BUILT
    logs.configure(ns.log_level, ns.log_format)
    try:
        return entry(args_in[idx + 1 :])
    except KeyboardInterrupt:
        print(f"prescale {ns.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
