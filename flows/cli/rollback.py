"""`ferry rollback`: consumers read an earlier published version again, in one transaction.

Nothing is rebuilt: the versions kept by blue-green runs (FERRY_KEEP_VERSIONS) are still in the
warehouse, and the ledger says what consumers read after each publication (flows/publish/).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from flows.cli._common import classify, leaf
from flows.exit_codes import ExitCode

PROG = "ferry rollback"


def add_parser(sub: Any) -> None:
    verb = leaf(
        sub,
        "rollback",
        _rollback,
        "make consumers read an earlier published version of the data again",
        "Makes consumers read the version published before the current one (or the one "
        "`--to` names) again, all relations in one transaction, rebuilding nothing. Refused "
        "(exit 2, nothing changed) when that version is no longer kept (FERRY_KEEP_VERSIONS). "
        "With a Prefect API configured (PREFECT_API_URL), it then emits the event "
        'ferry.data.rolled-back (the alert "ferry - data rolled back"), waiting '
        "FERRY_PREFECT_API_WAIT_S at most; if the API does not take it, the rollback stands "
        "and a line on stderr says so. In AWS, run the rollback-<env> deployment instead: it "
        "has the warehouse's credentials.",
    )
    verb.add_argument("--env", help="the environment (FERRY_ENV)")
    verb.add_argument(
        "--to",
        metavar="VERSION_OR_RUN_ID",
        help="a kept version (as `--list` shows it) or the id of the run that built it; "
        "default: the version published before the current one",
    )
    verb.add_argument(
        "--list", action="store_true", help="list the kept publications and change nothing"
    )
    verb.add_argument("--target", help="profiles.yml target (FERRY_TARGET)")
    verb.add_argument("--project-dir", help="dbt project directory (FERRY_PROJECT_DIR)")
    verb.add_argument("--profiles-dir", help="directory of profiles.yml (FERRY_PROFILES_DIR)")
    verb.add_argument("--json", action="store_true", help="print the result as JSON")


def _rollback(args: argparse.Namespace) -> ExitCode:
    from flows.prefect.api import configured_url
    from flows.publish.environment import failures, kept_publications, refusals, roll_back
    from flows.settings import FerrySettings

    # Settings, project, profile or target wrong, or no such version kept: bad input, nothing
    # changed. The warehouse unreachable or refusing the switch: a failure, nothing changed.
    with classify(invalid=refusals(), failed=failures()):
        settings = FerrySettings.from_env(
            env=args.env,
            target=args.target,
            project_dir=args.project_dir,
            profiles_dir=args.profiles_dir,
        )
        env = settings.run.env
        if args.list:
            return _list(env, kept_publications(settings), as_json=args.json)
        rolled_back = roll_back(settings, args.to)
    back = rolled_back.publication
    if args.json:
        print(json.dumps(_record(back, current=True)))
    else:
        print(rolled_back.describe())
    sys.stdout.flush()  # said before the event is waited for
    if not (api := configured_url()):
        return ExitCode.OK
    from flows.prefect.events import emit_rolled_back  # Prefect: only with an API to tell

    if (
        not_sent := emit_rolled_back(rolled_back, timeout_s=settings.prefect.api_wait_s)
    ) is not None:
        print(
            f"{PROG}: rolled back, but the Prefect API at {api} did not get the rollback's "
            f"event, so no alert was sent: {not_sent}",
            file=sys.stderr,
        )
    return ExitCode.OK


def _list(env: str, found: list[Any], *, as_json: bool) -> ExitCode:
    if as_json:
        current = found[-1].seq if found else None
        print(json.dumps([_record(p, current=p.seq == current) for p in found]))
        return ExitCode.OK
    if not found:
        print(f"nothing was published in {env} (blue-green runs publish)")
        return ExitCode.OK
    print(f"{'':2}{'seq':>4}  {'version':<16}{'kind':<10}{'published (UTC)':<21}relations")
    for publication in found:
        mark = "*" if publication is found[-1] else ""
        print(
            f"{mark:<2}{publication.seq:>4}  {publication.version:<16}{publication.kind:<10}"
            f"{publication.published_at:%Y-%m-%d %H:%M:%S}  {len(publication.mapping)}"
        )
    print("* what consumers read now")
    return ExitCode.OK


def _record(publication: Any, *, current: bool) -> dict[str, Any]:
    return {
        "seq": publication.seq,
        "version": publication.version,
        "kind": publication.kind,
        "published_at": publication.published_at.isoformat(),
        "current": current,
        "relations": {
            f"{c.schema}.{c.name}": f"{s.schema}.{s.name}" for c, s in publication.mapping
        },
    }
