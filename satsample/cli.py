"""Command-line entry point: ``satsample demo --out DIR`` (also ``python -m satsample``).

Errors in the user's input (options, paths, definitions) end with a one-line
message on stderr and exit status 2, never a traceback.  Outputs are written
to a temporary folder inside ``DIR`` and moved into place only when every
file is complete, so a failed run leaves nothing that looks like a result.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ._validation import SatsampleError
from ._version import __version__

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and raise instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


class _UsageError(Exception):
    pass


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive integer")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer seed") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a non-negative integer")
    return value


def _build_parser() -> _Parser:
    parser = _Parser(
        prog="satsample",
        description="Design, weight and estimate a satisfaction survey of public-service users.",
    )
    parser.add_argument("--version", action="version", version=f"satsample {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    demo = sub.add_parser(
        "demo",
        help="run the whole yearly survey on the built-in synthetic data",
        description=(
            "Build the synthetic population, plan and draw a stratified sample per agency, "
            "simulate answers and nonresponse, weight, estimate the satisfaction index per "
            "item, element and overall (national and per agency, with bootstrap intervals) "
            "and write a CSV table, a PNG chart and a summary (text and HTML) to --out."
        ),
    )
    demo.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    demo.add_argument("--seed", type=_seed, default=2026, help="seed of the draw (default 2026)")
    demo.add_argument(
        "--population-seed", type=_seed, default=20240611,
        help="seed of the synthetic population (default 20240611)",
    )
    demo.add_argument("--n-users", type=_positive_int, default=200_000,
                      help="service users in the synthetic population (default 200000)")
    demo.add_argument("--replicates", type=_positive_int, default=500,
                      help="Rao-Wu bootstrap replicates (default 500)")
    demo.add_argument("--questionnaire", default="sipas_2017",
                      help="built-in questionnaire name or path to a JSON definition")
    demo.add_argument("--moe", type=float, default=0.10,
                      help="target margin of error of each agency's index (default 0.10)")
    demo.add_argument("--quiet", action="store_true", help="no progress messages")
    return parser


def _check_out_dir(path: str) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise SatsampleError(f"--out {path!r} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SatsampleError(f"--out {path!r} cannot be created: {exc.strerror}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise SatsampleError(f"--out {path!r} is not writable")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        if args.command == "demo":
            if not 0 < args.moe < 1:
                raise SatsampleError(f"--moe {args.moe!r} must lie in (0, 1)")
            out = _check_out_dir(args.out)
            from .demo import run_demo

            run_demo(
                out=out,
                seed=args.seed,
                population_seed=args.population_seed,
                n_users=args.n_users,
                n_replicates=args.replicates,
                questionnaire=args.questionnaire,
                moe=args.moe,
                progress=not args.quiet,
            )
        return 0
    except _UsageError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except SatsampleError as exc:
        print(f"satsample: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("satsample: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
