"""Write the dashboards' JSON, or check that the committed JSON matches the generator.

    python -m dashboards.generate            # rewrite dashboards/*.json
    python -m dashboards.generate --check    # exit 1 and name the files that drifted
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from dashboards import build, definitions

HERE = Path(__file__).resolve().parent
EXIT_DRIFT = 1


def filename(uid: str) -> str:
    return f"{uid}.json"


def rendered() -> dict[str, str]:
    """File name -> JSON text for every dashboard."""
    return {filename(d.uid): build.render(d) for d in definitions.ALL}


def drifted(out_dir: Path) -> list[str]:
    """Files in ``out_dir`` that are missing or differ from a fresh generation."""
    return sorted(name for name, text in rendered().items()
                  if not (out_dir / name).is_file() or (out_dir / name).read_text() != text)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dashboards.generate", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=HERE, help=f"output folder (default {HERE})")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 when the JSON drifted")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.check:
        stale = drifted(args.out)
        for name in stale:
            print(f"dashboards: {args.out / name} differs from the generator; "
                  "run python -m dashboards.generate", file=sys.stderr)
        return EXIT_DRIFT if stale else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in rendered().items():
        (args.out / name).write_text(text)
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
