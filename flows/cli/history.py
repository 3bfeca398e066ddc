"""`ferry history`: an environment's stored runs and each dbt node's record across them.

Reads the artifact store (`--artifacts`, default FERRY_ARTIFACTS) through a local cache that
fetches each run once (flows/history/); answers with an embedded DuckDB. `ferry history compact`
folds the parts the runs wrote into a new base now (flows.history.store.compact), as a run does
once enough piled up. Which stored runs a
command reads (`add_stored_runs_arguments`, `StoredRuns`) is defined here for `ferry report` too.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.cli._common import Leaf, Refused, classify
from flows.exit_codes import ExitCode

if TYPE_CHECKING:
    from flows.artifacts import ArtifactStore
    from flows.history.fetch import Sync
    from flows.settings import FerrySettings

PROG = "ferry history"


def add_stored_runs_arguments(parser: argparse.ArgumentParser) -> None:
    """Which stored runs a command reads (`ferry history`, `ferry report`)."""
    parser.add_argument("--since", help="runs started since: 7d, 12h, 30m, 2w, or a date")
    parser.add_argument("--env", help="the environment (FERRY_ENV; default local)")
    parser.add_argument("--project", help="only this dbt project (default: every project)")
    parser.add_argument(
        "--artifacts", help="s3://bucket/prefix or a folder (FERRY_ARTIFACTS; .ferry/artifacts)"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where fetched runs are kept (default .ferry/history)",
    )


@dataclass(frozen=True)
class StoredRuns:
    """The runs `add_stored_runs_arguments` named: the environment's store, from when."""

    settings: FerrySettings
    since: datetime | None
    store: ArtifactStore
    cache_dir: Path
    project: str | None

    @classmethod
    def open(cls, args: argparse.Namespace) -> StoredRuns:
        """Raises Refused (exit 2): bad settings, --since or store address."""
        from flows.artifacts import open_store
        from flows.history.fetch import DEFAULT_CACHE
        from flows.history.query import parse_since
        from flows.settings import FerrySettings, InvalidSettings

        with classify(invalid=(InvalidSettings, ValueError)):
            settings = FerrySettings.from_env(artifacts=args.artifacts, env=args.env)
            since = parse_since(args.since) if args.since else None
            store = open_store(
                settings.store.artifacts, endpoint_url=settings.store.s3_endpoint_url
            )
        return cls(settings, since, store, args.cache_dir or DEFAULT_CACHE, args.project)

    def sync(self) -> Sync:
        """Fetches the runs the cache has not seen.

        Raises:
            flows.artifacts.ArtifactStoreError, OSError: the store or the cache failed.
        """
        from flows.history.fetch import sync
        from flows.run.history import record_of_stored

        return sync(
            self.store,
            self.settings.run.env,
            self.cache_dir,
            self.project,
            record_of=record_of_stored,
        )


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "history",
        help="the stored runs of an environment and each node's durations and failure rate",
        description="The runs stored in the artifact store (newest first), with the timing "
        "regressions and volume anomalies each found, and, per dbt node, runs, median/p95/last "
        "duration, failure and warning rates and rows affected. `ferry history compact` "
        "folds the parts the runs wrote into a new base of the history runs read (each "
        "project of --env, or --project's), deleting nothing. Exit 0, 1 when the store "
        "cannot be read (or written), 2 on bad input.",
    )
    parser.add_argument(
        "mode",
        nargs="?",
        choices=["compact"],
        help="compact: fold the history's parts into a new base now (default: show)",
    )
    add_stored_runs_arguments(parser)
    parser.add_argument("--limit", type=int, default=20, help="rows per table (default 20)")
    parser.add_argument("--nodes", action="store_true", help="show the nodes table only")
    parser.add_argument("--json", action="store_true", help="print runs and nodes as JSON")
    parser.set_defaults(leaf=Leaf(PROG, _history))


def _history(args: argparse.Namespace) -> ExitCode:
    from flows.artifacts import ArtifactStoreError
    from flows.history.query import ask

    if args.mode == "compact":
        return _compact(args)
    runs = StoredRuns.open(args)
    if args.limit < 1:
        raise Refused(f"--limit {args.limit}: pass a number of rows, 1 or more")
    with classify(failed=(ArtifactStoreError, OSError), aws=True):
        synced = runs.sync()
        found = ask(synced.folder, since=runs.since, limit=args.limit, project=runs.project)
    env, since, store_url = runs.settings.run.env, runs.since, runs.store.url
    if args.json:
        print(
            json.dumps(
                {
                    "store": store_url,
                    "env": env,
                    "since": since.isoformat() if since else None,
                    "runs_total": found.runs_total,
                    "fetched": synced.fetched,
                    "runs": found.runs,
                    "nodes": found.nodes,
                },
                default=_jsonable,
            )
        )
        return ExitCode.OK
    print(
        f"{found.runs_total} run(s) of environment {env!r} at {store_url}"
        + (f" since {since:%Y-%m-%d %H:%M} UTC" if since else "")
        + f" ({synced.fetched} newly fetched)"
    )
    if not args.nodes:
        print()
        print(_table(_RUN_COLUMNS, [_run_row(r) for r in found.runs]))
    if found.nodes:
        print()
        print(_table(_NODE_COLUMNS, [_node_row(n) for n in found.nodes]))
    return ExitCode.OK


def _compact(args: argparse.Namespace) -> ExitCode:
    import tempfile
    from datetime import UTC, timedelta

    from flows.artifacts import ArtifactStoreError
    from flows.history import store

    showing = {"--since": args.since, "--nodes": args.nodes, "--json": args.json}
    if given := [flag for flag, value in showing.items() if value]:
        raise Refused(f"{', '.join(given)}: compact folds the whole history; drop them")
    runs = StoredRuns.open(args)
    env = runs.settings.run.env
    keep_since = datetime.now(UTC) - timedelta(days=runs.settings.history.days)
    with classify(failed=(ArtifactStoreError, OSError), aws=True):
        projects = [runs.project] if runs.project else runs.store.list_folders("")
        with tempfile.TemporaryDirectory(prefix="ferry-compact-") as work:
            for project in projects:
                if project != runs.project and env not in runs.store.list_folders(f"{project}/"):
                    continue
                done = store.compact(
                    runs.store, project, env, Path(work) / project, keep_since=keep_since
                )
                where = f"{runs.store.url}/{store.history_prefix(project, env)}"
                print(
                    f"{where}: nothing to fold"
                    if done is None
                    else f"{where}: compacted into {done.keys[1]} ({done.bytes / 1e6:.2f} MB)"
                )
    return ExitCode.OK


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


_RUN_COLUMNS = (
    "started (UTC)",
    "deployment",
    "request",
    "outcome",
    "took",
    "failed",
    "signals",
    "git",
    "image",
)
_NODE_COLUMNS = ("node", "runs", "median", "p95", "last", "failed", "warned", "rows")
# The signals column's width: the first (the worst) signal, its node's name shortened to fit.
_SIGNALS_WIDTH = 50


def _run_row(run: dict[str, Any]) -> tuple[str, ...]:
    failed = run["failed"] or []
    return (
        f"{run['started_at']:%Y-%m-%d %H:%M}",
        run["deployment"] or "",
        run["selection"] or "",
        run["outcome"] or "",
        _seconds(run["duration_s"]),
        (failed[0] + (f" +{len(failed) - 1}" if len(failed) > 1 else "")) if failed else "",
        _signals(run["regressions"], run["anomalies"]),
        (run["git_sha"] or "")[:8],
        (run["image_digest"] or "").removeprefix("sha256:")[:12],
    )


def _signals(regressions: list[dict[str, Any]], anomalies: list[dict[str, Any]]) -> str:
    """What the run found against the runs before it (flows.history.signals, each list worst
    first): `slow: fct_orders 42.0s (usual 12.0s) +2`, `rows: dim_x 0 (usual 1,000)`."""
    slow = [
        ("slow", r["unique_id"], f"{_seconds(r['s'])} (usual {_seconds(r['usual_s'])})")
        for r in regressions
    ]
    rows = [
        ("rows", a["unique_id"], f"{a['rows']:,} (usual {a['usual_rows']:,.0f})") for a in anomalies
    ]
    found = slow + rows
    if not found:
        return ""
    kind, unique_id, what = found[0]
    more = f" +{len(found) - 1}" if len(found) > 1 else ""
    name = unique_id.split(".", 2)[-1]  # model.shop.fct_orders: fct_orders
    room = _SIGNALS_WIDTH - len(f"{kind}:  {what}{more}")
    if len(name) > room:
        name = name[: max(room - 3, 1)] + "..."
    return f"{kind}: {name} {what}{more}"


def _node_row(node: dict[str, Any]) -> tuple[str, ...]:
    return (
        node["node"],
        str(node["runs"]),
        _seconds(node["median_s"]),
        _seconds(node["p95_s"]),
        _seconds(node["last_s"]),
        f"{node['failure_rate']:.0%}",
        f"{node['warning_rate']:.0%}",
        "" if node["last_rows"] is None else str(node["last_rows"]),
    )


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}s" if value < 600 else f"{value / 60:.0f}m"


def _table(columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    if not rows:
        return "(none)"
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)
