"""`ferry report`: an environment's run history as one self-contained HTML page.

Reads the artifact store through the same cache as `ferry history` (flows/history/), then
flows.report.render draws it; the page opens offline (plotly.js is inlined).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from flows.cli._common import Leaf, Refused, classify
from flows.cli.history import StoredRuns, add_stored_runs_arguments
from flows.exit_codes import ExitCode

PROG = "ferry report"
DEFAULT_OUT = Path(".ferry/report/index.html")


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "report",
        help="an environment's run history as one HTML page that opens offline",
        description="Writes one self-contained HTML page (no CDN, no server) of the runs stored "
        "in the artifact store: run durations by outcome, the slowest models, the latest "
        "regressions and anomalies, failure and warning rates by day, rows affected. Exit 0, "
        "1 when the store cannot be read or the page cannot be written, 2 on bad input.",
    )
    add_stored_runs_arguments(parser)
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"the page to write (default {DEFAULT_OUT})",
    )
    parser.set_defaults(leaf=Leaf(PROG, _report))


def _report(args: argparse.Namespace) -> ExitCode:
    from flows.artifacts import ArtifactStoreError
    from flows.history.query import refresh_tables
    from flows.report.render import report

    runs = StoredRuns.open(args)
    if args.out.is_dir():
        raise Refused(f"--out {args.out} is a folder: pass the page's file name")
    with classify(failed=(ArtifactStoreError, OSError), aws=True):
        synced = runs.sync()
        refresh_tables(synced.folder)
        made = report(
            synced.folder,
            env=runs.settings.run.env,
            project=runs.project,
            store_url=runs.store.url,
            since=runs.since,
        )
    with classify(failed=(OSError,)):
        _write(args.out, made.html)
    print(f"ferry: report of {made.runs} run(s) written to {args.out}")
    return ExitCode.OK


def _write(path: Path, page: str) -> None:
    """Written beside, then moved into place: a reader never sees half a page."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
