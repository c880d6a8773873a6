"""Command-line entry point (also ``python -m satsample``).

Commands::

    satsample plan CONFIG [--force]     allocate, draw the sample and reserves, field lists
    satsample validate CONFIG [--strict] data-quality report of the returned forms
    satsample run CONFIG                 weighting, indices, flags, league table, report
    satsample demo --out DIR             the same path on synthetic data

Exit status (documented in docs/your_own_survey.md):

====  ======================================================================
0     success (``validate`` without ``--strict`` also when checks fail)
1     ``validate --strict``: at least one check failed
2     usage or configuration error (bad option, bad TOML, unknown key, bad value)
3     input data error (file missing or unreadable, missing column, bad values;
      ``run`` stopped by a failing check with ``checks.on_error = "stop"``)
4     output error (an existing plan without ``--force``, a folder not writable)
5     estimation error (e.g. a weighting class without respondents, raking that
      does not converge)
70    internal error (a bug: please report it; ``SATSAMPLE_DEBUG=1`` shows the traceback)
130   interrupted
====  ======================================================================

Errors are one line on stderr, never a traceback.  Outputs are written to a temporary
folder and moved into place only when every file is complete, so a failure leaves nothing
that looks like a result.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ._validation import SatsampleError
from ._version import __version__

__all__ = ["EXIT_CODES", "main"]

EXIT_CODES = {"ok": 0, "checks_failed": 1, "usage": 2, "data": 3, "output": 4,
              "estimation": 5, "internal": 70, "interrupted": 130}


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
        epilog="Exit status: 0 ok, 1 validate --strict found problems, 2 usage or "
               "configuration error, 3 input data error, 4 output error, 5 estimation "
               "error, 70 internal error, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"satsample {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    p_plan = sub.add_parser(
        "plan", help="allocate, draw the sample and the reserves, write the field lists",
        description="Read CONFIG's frame, allocate the sample (no agency below the "
                    "publication minimum), draw the sample and the ordered reserves and write "
                    "plan/ (design.json, field_lists.xlsx, field_list.csv, allocation.csv).")
    p_plan.add_argument("config", metavar="CONFIG", help="the survey's TOML configuration")
    p_plan.add_argument("--force", action="store_true",
                        help="replace an existing plan (field lists already handed out would "
                             "no longer match)")
    p_plan.add_argument("--quiet", action="store_true", help="no progress messages")
    p_val = sub.add_parser(
        "validate", help="data-quality report of the returned forms",
        description="Check the response files against the plan and the questionnaire and "
                    "write validation/ (quality_report.html and tables).")
    p_val.add_argument("config", metavar="CONFIG")
    p_val.add_argument("--strict", action="store_true",
                       help="exit with status 1 when any check fails")
    p_val.add_argument("--quiet", action="store_true", help="no progress messages")
    p_run = sub.add_parser(
        "run", help="weight, estimate, flag, rank and report",
        description="Dispositions and response rates, weighting replayed on every replicate, "
                    "the index per item, element and overall for every domain, flags, the "
                    "league table and the report, written to results/.")
    p_run.add_argument("config", metavar="CONFIG")
    p_run.add_argument("--quiet", action="store_true", help="no progress messages")
    demo = sub.add_parser(
        "demo",
        help="run a whole survey year on synthetic data (files, plan, validate, run)",
        description=(
            "Build a synthetic population, write its frame and a configuration, run plan, "
            "simulate the field work into Excel and CSV files (with a few planted problems), "
            "run validate and run, and compare the results with the known truth."
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
    demo.add_argument("--moe", type=float, default=10.0, metavar="POINTS",
                      help="target margin of error (95 %%) of each agency's index, in points "
                           "on the 0-100 scale of the outputs, from 1 to 50 (default 10, "
                           "i.e. ±10 points; 0.10 is refused, not read as a share)")
    demo.add_argument("--small-area", action="store_true",
                      help="a lean year (proportional allocation, 10 planned respondents in "
                           "small offices) whose agencies below 30 respondents get a "
                           "model-based (Fay-Herriot) estimate, labelled so in every output")
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


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    from .survey.errors import ConfigError, DataError, OutputError

    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_CODES["usage"]
        if args.command == "demo":
            from .demo import check_moe_points

            try:
                check_moe_points(args.moe)
            except SatsampleError as exc:
                raise _UsageError(f"satsample demo: {exc}") from None
            try:
                out = _check_out_dir(args.out)
            except SatsampleError as exc:
                raise _UsageError(f"satsample demo: {exc}") from None
            from .demo import run_demo

            try:
                run_demo(out=out, seed=args.seed, population_seed=args.population_seed,
                         n_users=args.n_users, n_replicates=args.replicates,
                         questionnaire=args.questionnaire, moe=args.moe,
                         progress=not args.quiet, small_area=args.small_area)
            except (ConfigError, DataError, OutputError):
                raise
            except SatsampleError as exc:  # a bad --questionnaire definition
                raise ConfigError(str(exc)) from None
            return EXIT_CODES["ok"]
        from .survey import pipeline

        progress = pipeline.Progress(enabled=not args.quiet)
        if args.command == "plan":
            res = pipeline.plan(args.config, force=args.force, progress=progress)
            print(f"plan: {res.n_main:,} people to interview in {len(res.allocation)} "
                  f"agencies, {res.n_reserve:,} on reserve lists; field lists in {res.folder}")
            for note in res.notes:
                print(f"  note: {_one_line(note)}")
            return EXIT_CODES["ok"]
        if args.command == "validate":
            val = pipeline.validate(args.config, progress=progress)
            qr = val.quality
            print(f"validate: {len(qr.errors)} error(s), {len(qr.warnings)} warning(s); "
                  f"report in {val.folder / 'quality_report.html'}")
            for f in qr.findings[:10]:
                print(f"  {f.severity}: {_one_line(f.message)}")
            if len(qr.findings) > 10:
                print(f"  ... and {len(qr.findings) - 10} more (see quality_findings.csv)")
            return EXIT_CODES["checks_failed"] if (args.strict and val.failed) else 0
        res_run = pipeline.run(args.config, progress=progress)
        nat = res_run.estimates["all"].overall.iloc[0]
        print(f"run: overall index {100 * nat['estimate']:.2f} (95% CI "
              f"{100 * nat['ci_low']:.2f} to {100 * nat['ci_high']:.2f}); "
              f"{len(res_run.quality.errors)} data problem(s) resolved; results in "
              f"{res_run.folder}")
        sa = res_run.small_area
        if sa is not None:
            print(f"  small-area: {len(sa.model_based)} agencies below {sa.min_n} respondents "
                  f"published with a model-based estimate ({_one_line(sa.fit.model)})")
            for a, lack in sa.no_covariates.items():
                print(f"  note: agency {a} has no covariate {', '.join(lack)}: not in the "
                      "small-area model")
            for note in sa.notes:
                print(f"  note: small-area: {_one_line(note)}")
        return EXIT_CODES["ok"]
    except _UsageError as exc:
        print(_one_line(str(exc)), file=sys.stderr)
        return EXIT_CODES["usage"]
    except ConfigError as exc:
        print(f"satsample: configuration error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_CODES["usage"]
    except DataError as exc:
        print(f"satsample: data error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_CODES["data"]
    except OutputError as exc:
        print(f"satsample: output error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_CODES["output"]
    except SatsampleError as exc:
        print(f"satsample: error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_CODES["estimation"]
    except KeyboardInterrupt:
        print("satsample: interrupted", file=sys.stderr)
        return EXIT_CODES["interrupted"]
    except Exception as exc:
        if os.environ.get("SATSAMPLE_DEBUG"):
            raise
        print(f"satsample: internal error ({type(exc).__name__}): {_one_line(str(exc))}; "
              "please report it (set SATSAMPLE_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_CODES["internal"]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
