"""The ``xpath`` command line.

``xpath demo --out DIR`` runs the main job on the built-in sample data.
Errors are printed without a traceback (exit code 2 for bad input, 1 otherwise)
unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

__all__ = ["main"]

log = logging.getLogger(__name__)


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    outputs = run_demo(Path(args.out))
    print("xpath demo wrote:")
    for path in outputs:
        print(f"  {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xpath", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the main job on the built-in sample data")
    demo.add_argument("--out", default="outputs", help="output folder (default: outputs)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format="%(message)s")
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError) as err:
        if args.debug:
            raise
        print(f"xpath: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - the CLI's last line of defence
        if args.debug:
            raise
        print(f"xpath: {type(err).__name__}: {err} (run with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
