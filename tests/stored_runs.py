"""Stored runs for tests: a summary.json as this ferry writes it, and one an older ferry wrote."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from flows.run.summary import RunSummary

FIXTURES = Path(__file__).parent / "fixtures" / "stored_runs"
SUMMARY_V1 = FIXTURES / "summary_v1.json"
"""A real summary.json written before summaries had a schema version or a deployment (schema 1):
`ferry run --no-prefect --select tag:daily --exclude tag:lookup` on dbt_project, unseeded."""


def stored_run(*, started_at: datetime, **fields: Any) -> RunSummary:
    """A run's summary as it is stored, read back as every reader reads it: `fields` over a run
    of `build` that passed, finished 60 s after it started. Nodes (`failed`...) may be given as
    `{"unique_id": ...}` alone."""
    node = {
        "resource_type": "model",
        "name": "n",
        "status": "error",
        "message": None,
        "started_at": None,
        "finished_at": None,
        "execution_time": 0.0,
    }
    for listed in ("failed", "warned", "slowest"):
        if listed in fields:
            fields[listed] = [node | given for given in fields[listed]]
    document = {
        "run_id": "run-001",
        "flow_run_id": None,
        "project": "shop",
        "env": "prod",
        "request": {"command": "build"},
        "target": "prod",
        "outcome": "success",
        "verdict": "all passed",
        "started_at": started_at.isoformat(),
        "finished_at": (started_at + timedelta(seconds=60)).isoformat(),
        "duration_s": 60.0,
        "schema_version": 2,
        **fields,
    }
    return RunSummary.read(document)
