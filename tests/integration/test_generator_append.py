"""The generator's --append: new rows in one raw table only, so one source alone is fresher.

DuckDB (and one build to prove the rows are valid) and PostgreSQL, which runs on
127.0.0.1:5432 here and in CI.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import duckdb
import psycopg2
import pytest

from flows.run.owner import run
from flows.run.request import RunRequest
from flows.run.verdict import Outcome
from tests.conftest import load_generator, make_settings

pytestmark = pytest.mark.integration

TABLES = ["customers", "products", "orders", "order_items", "payments", "sessions"]
Query = Callable[[str], list[tuple[Any, ...]]]


def _state(query: Query, schema: str) -> dict[str, tuple[int, dt.datetime]]:
    """Each raw table's row count and newest `_loaded_at`."""
    return {
        table: query(f"select count(*), max(_loaded_at) from {schema}.{table}")[0]
        for table in TABLES
    }


def _assert_only_payments_moved(query: Query, schema: str, append: Callable[[], Any]) -> None:
    before = _state(query, schema)
    ((old_max_id,),) = query(f"select max(id) from {schema}.payments")
    summary = append()
    after = _state(query, schema)

    assert {t: after[t] for t in TABLES if t != "payments"} == {
        t: before[t] for t in TABLES if t != "payments"
    }
    (rows, newest), (rows_after, newest_after) = before["payments"], after["payments"]
    assert rows_after == rows + 20
    assert newest_after == newest.replace(microsecond=0) + dt.timedelta(hours=1)
    assert summary.appended_ids == list(range(old_max_id + 1, old_max_id + 21))
    ((total, distinct, orphans, paid),) = query(
        f"select count(*), count(distinct id),"
        f" sum(case when not exists (select 1 from {schema}.orders as o"
        f" where o.id = p.order_id) then 1 else 0 end),"
        f" sum(case when status = 'success' then 1 else 0 end)"
        f" from {schema}.payments as p where id > {old_max_id}"
    )
    assert (total, distinct, orphans, paid) == (20, 20, 0, 0)
    ((ids, distinct_ids),) = query(f"select count(*), count(distinct id) from {schema}.payments")
    assert ids == distinct_ids


def test_append_payments_on_duckdb_moves_payments_only_and_builds(shop_duckdb, tmp_path):
    path = str(tmp_path / "shop.duckdb")
    generator = load_generator(shop_duckdb)

    def query(sql: str) -> list[tuple[Any, ...]]:
        with duckdb.connect(path) as conn:
            return conn.execute(sql).fetchall()

    argv = ["--duckdb-path", path, "--append", "payments", "--seed", "7"]
    _assert_only_payments_moved(query, "main_raw", lambda: generator.run(argv))

    summary = run(
        RunRequest.build(
            command="build", exclude=["resource_type:test", "resource_type:unit_test"]
        ),
        make_settings(shop_duckdb, tmp_path),
    ).summary
    assert summary.outcome is Outcome.SUCCESS, summary.verdict
    ((payments,),) = query("select count(*) from main.stg_payments__payments")
    ((raw,),) = query("select count(distinct id) from main_raw.payments")
    assert payments == raw


def test_append_is_deterministic_and_exclusive_with_late_batch(shop_duckdb, tmp_path, capsys):
    generator = load_generator(shop_duckdb)
    copy = tmp_path / "copy.duckdb"
    copy.write_bytes((tmp_path / "shop.duckdb").read_bytes())
    rows = []
    for path in (tmp_path / "shop.duckdb", copy):
        assert generator.main(["--duckdb-path", str(path), "--append", "sessions"]) == 0
        with duckdb.connect(str(path), read_only=True) as conn:
            rows.append(conn.execute("select * from main_raw.sessions order by id").fetchall())
    assert rows[0] == rows[1]
    assert "appended 20 sessions (ids 15001..15020) loaded at" in capsys.readouterr().out

    with pytest.raises(SystemExit) as refused:
        generator.main(["--duckdb-path", str(copy), "--append", "orders", "--late-batch"])
    assert refused.value.code == 2


def test_append_payments_on_postgres_moves_payments_only(shop_project, pg_schema):
    generator = load_generator(shop_project)
    assert generator.main(["--target", "postgres"]) == 0

    def query(sql: str) -> list[tuple[Any, ...]]:
        with (
            psycopg2.connect("host=127.0.0.1 port=5432 user=postgres dbname=test") as conn,
            conn.cursor() as cur,
        ):
            cur.execute(sql)
            return cur.fetchall()

    argv = ["--target", "postgres", "--append", "payments"]
    _assert_only_payments_moved(query, f"{pg_schema}_raw", lambda: generator.run(argv))
