"""`ferry report`: an environment's run history as one HTML page that opens offline.

Reads the artifact store through the same cache as `ferry history` (flows/history/), then
flows.report.render writes the page and flows.report.site puts it in its folder, with plotly.js
in `assets/` beside it (written once per plotly.js version), as a run puts it in the store.
"""

from __future__ import annotations

import argparse
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
        description="Writes one HTML page (no CDN, no server; plotly.js in assets/ beside it) "
        "of the runs stored in the artifact store: run durations by outcome, the slowest "
        "models, the latest regressions and anomalies, failure and warning rates by day, rows "
        "affected. Exit 0, 1 when the store cannot be read or the page cannot be written, 2 on "
        "bad input.",
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
    from flows.artifacts import ArtifactStoreError, LocalStore
    from flows.history.query import refresh_tables
    from flows.report.render import report
    from flows.report.site import publish

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
    with classify(failed=(OSError, LookupError)):  # LookupError: plotly.js not found
        publish(LocalStore(args.out.parent), args.out.name, made.html)
    print(f"ferry: report of {made.runs} run(s) written to {args.out}")
    return ExitCode.OK
