"""dbt-duckdb keeps the database file locked until the process exits; the writer slot does not
let go before the file is free, or the next run of the environment would fail on its lock."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.dbt.connections import close_local_databases
from flows.prefect.writer_slot import writer_slot
from flows.run.owner import run
from flows.run.request import RunRequest
from flows.run.verdict import Outcome
from tests.conftest import make_settings

pytestmark = pytest.mark.integration


def opened_by_another_process(path: Path) -> str:
    probe = f"import duckdb; duckdb.connect({str(path)!r}).close(); print('opened')"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    return proc.stdout.strip() or proc.stderr.strip().splitlines()[-1]


def test_the_file_is_free_once_the_writer_slot_is_left(shop_duckdb, tmp_path):
    db = tmp_path / "shop.duckdb"
    settings = make_settings(shop_duckdb, tmp_path)

    held = run(RunRequest.build(command="seed"), settings, run_id="seed-without-slot")
    assert held.summary.outcome is Outcome.SUCCESS, held.summary.verdict
    assert "Could not set lock" in opened_by_another_process(db)  # dbt-duckdb keeps it open
    assert close_local_databases() is True
    assert opened_by_another_process(db) == "opened"
    assert close_local_databases() is False  # nothing left to close

    with temporary_settings(updates={PREFECT_API_URL: None}):  # no queue: the file still goes
        report = run(
            RunRequest.build(command="seed"),
            settings,
            run_id="seed-with-slot",
            writer_slot=functools.partial(writer_slot, "test"),
        )
    assert report.summary.outcome is Outcome.SUCCESS, report.summary.verdict
    assert opened_by_another_process(db) == "opened"
