"""Blue-green runs of the example project, on DuckDB and PostgreSQL: what consumers read changes
only when a whole run passed, all at once, and `ferry rollback` brings the previous version back.

- Three loads (a first build, late rows and changed customers, new payments by an only-changed
  run): a blue-green side ends every step reading exactly what a direct side holds, the
  incremental model and the snapshot included (they continue from a copy).
- A run whose tests fail after its models built: consumers read what they read before, row for
  row; its version stays until the next publish drops it.
- `ferry rollback` (PostgreSQL): consumers read the first version again, then the second; a
  version no longer kept is refused (exit 2) and nothing changes; a read-only role keeps its
  access.
- A reader comparing two related models in one statement, in a loop on its own connection
  through a blue-green run, never sees one model new and the other old (PostgreSQL).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import psycopg2
import pytest

from flows.cli import main as ferry
from flows.exit_codes import ExitCode
from flows.run.owner import run
from flows.run.request import RunRequest
from flows.run.summary import RunSummary, markdown_report
from flows.run.verdict import Outcome
from tests.conftest import load_generator, make_settings
from tests.integration.tables import DSN, Rows, consumer_rows, differences

pytestmark = pytest.mark.integration

UNTESTED = ["resource_type:test", "resource_type:unit_test"]  # tables are what is compared


@dataclass
class Shop:
    """The example project on one warehouse, with a side (a DuckDB file or a PostgreSQL
    schema) per environment, and its raw data loaded by the project's generator."""

    warehouse: str
    project: Path
    tmp_path: Path
    monkeypatch: pytest.MonkeyPatch
    base: str  # the PostgreSQL schema of this test (every side is `<base>...`)
    manifests: dict[str, Path] = field(default_factory=dict)  # each side's latest run's

    def location(self, env: str) -> str:
        if self.warehouse == "duckdb":
            return str(self.tmp_path / f"{env}.duckdb")
        return self.base if env == "direct" else f"{self.base}{env}"

    def on(self, env: str) -> None:
        variable = "FERRY_DUCKDB_PATH" if self.warehouse == "duckdb" else "FERRY_PG_SCHEMA"
        self.monkeypatch.setenv(variable, self.location(env))
        self.monkeypatch.setenv("FERRY_PUBLISH_LEDGER_SCHEMA", f"{self.base}_{env}_ledger")

    def load(self, env: str, *args: str) -> None:
        self.on(env)
        where = ["--duckdb-path", self.location(env)] if self.warehouse == "duckdb" else []
        generator = load_generator(self.project)
        assert generator.main(["--target", self.warehouse, *where, *args]) == 0

    def build(self, env: str, *, expect: Outcome | None = None, **given: object) -> RunSummary:
        self.on(env)
        settings = make_settings(
            self.project,
            self.tmp_path,
            env=env,
            target_path=self.tmp_path / env / "target",
            history=False,
            keep_versions=2,
        )
        request = RunRequest.build(command="build", target=self.warehouse, **given)
        done = run(request, settings).summary
        self.manifests[env] = Path(done.artifacts, "manifest.json")  # the stored run's
        if expect is None:
            assert done.outcome in (Outcome.SUCCESS, Outcome.WARNINGS), done.verdict
        else:
            assert done.outcome is expect, done.verdict
        return done

    def consumers(self, env: str) -> Rows:
        return consumer_rows(self.warehouse, self.location(env))  # type: ignore[arg-type]

    def consumer_tables(self, env: str) -> Rows:
        """What consumers read of the models built as tables (tables, incrementals, seeds,
        the snapshot). A view model reads its inputs as they are now, in either mode: a view
        over raw data shows new raw rows at once, whatever was published."""
        manifest = json.loads(self.manifests[env].read_text())
        tables = {
            node["alias"]
            for node in manifest["nodes"].values()
            if node["resource_type"] in ("model", "seed", "snapshot")
            and node["config"]["materialized"] in ("table", "incremental", "seed", "snapshot")
        }
        assert len(tables) >= 9, tables
        return {
            name: rows
            for name, rows in self.consumers(env).items()
            if name.rsplit(".", 1)[1] in tables
        }

    def rollback(self, env: str, *args: str) -> int:
        self.on(env)
        self.monkeypatch.setenv("FERRY_WORK_DIR", str(self.tmp_path / "runs"))
        return ferry(
            [
                "rollback",
                "--env",
                env,
                "--target",
                self.warehouse,
                "--project-dir",
                str(self.project),
                "--profiles-dir",
                str(self.project),
                *args,
            ]
        )

    def schemas(self, env: str) -> list[str]:
        """The schemas of one side's warehouse, versioned ones included."""
        if self.warehouse == "duckdb":
            con = duckdb.connect(self.location(env))
            try:
                return [
                    s
                    for (s,) in con.execute(
                        "select schema_name from information_schema.schemata "
                        "where catalog_name = current_database() order by 1"
                    ).fetchall()
                ]
            finally:
                con.close()
        with psycopg2.connect(DSN) as conn, conn.cursor() as cur:
            cur.execute(
                "select nspname from pg_namespace where nspname like %s order by 1",
                (self.location(env).replace("_", r"\_") + "%",),
            )
            return [s for (s,) in cur.fetchall()]


@pytest.fixture(params=["duckdb", "postgres"])
def shop(request, shop_project, tmp_path, monkeypatch) -> Iterator[Shop]:
    base = request.getfixturevalue("pg_schema") if request.param == "postgres" else "t"
    yield Shop(request.param, shop_project, tmp_path, monkeypatch, base)


def versions_of(shop: Shop, env: str, schema_suffix: str = "") -> list[str]:
    """The versions built of one side's main schema that are still in the warehouse."""
    main = ("main" if shop.warehouse == "duckdb" else shop.location(env)) + schema_suffix
    return sorted(
        s.removeprefix(f"{main}__") for s in shop.schemas(env) if s.startswith(f"{main}__r")
    )


def test_blue_green_ends_where_direct_ends_incrementals_and_snapshot_included(shop, capsys):
    def step(change: Callable[[str], None], **given: object) -> RunSummary:
        for env in ("direct", "bg"):
            change(env)
        shop.build("direct", exclude=UNTESTED)
        done = shop.build("bg", exclude=UNTESTED, publish="blue-green", **given)
        assert differences(shop.warehouse, shop.location("direct"), shop.location("bg")) == []  # type: ignore[arg-type]
        assert done.published is not None and done.published.published, done.verdict
        return done

    first = step(lambda env: shop.load(env, "--as-of", "2026-11-30"))
    assert first.published is not None and first.published.continued == []  # nothing yet
    assert "published " in first.verdict and "switched at once" in first.verdict

    # Late rows and changed customers; only-changed from here (the hourly deployment's way,
    # published the same way): this first one has no marks yet and builds everything.
    second = step(lambda env: shop.load(env, "--late-batch"), only_changed=True)
    assert second.published is not None
    assert {"fct_order_items", "snap_customers"} <= {
        name.rsplit(".", 1)[1] for name in second.published.continued
    }

    third = step(lambda env: shop.load(env, "--append", "payments"), only_changed=True)
    assert third.changes is not None and "model.shop.dim_products" not in third.changes.ran
    assert third.published is not None and third.published.dropped  # beyond 2 kept
    # Kept: the publications of the 2 latest versions. A version's schemas stay while a kept
    # publication reads them (what the later, partial runs did not rebuild), and no longer.
    capsys.readouterr()
    assert shop.rollback("bg", "--list", "--json") == ExitCode.OK
    kept = json.loads(capsys.readouterr().out)
    assert len({p["version"] for p in kept}) == 2
    main = "main" if shop.warehouse == "duckdb" else shop.location("bg")
    schemas_read = {source.split(".")[0] for p in kept for source in p["relations"].values()}
    assert set(versions_of(shop, "bg")) == {
        schema.rsplit("__", 1)[1] for schema in schemas_read if schema.startswith(f"{main}__r")
    }
    # What the third run did not build, consumers still read from the version that built it.
    assert "main.dim_products" not in {n.split(".", 1)[1] for n in third.published.relations}


# Nothing is switched when a run fails, whatever the warehouse: DuckDB alone (the switch and the
# drop of versions are proven on both by the other tests).
@pytest.mark.parametrize("shop", ["duckdb"], indirect=True)
def test_a_run_whose_tests_fail_publishes_nothing_and_consumers_read_what_they_read(shop):
    shop.load("bg", "--as-of", "2026-11-30")
    shop.build("bg", publish="blue-green", only_changed=True)  # the hourly deployment's way
    before = shop.consumer_tables("bg")

    shop.load("bg", "--late-batch")
    failed = shop.build(
        "bg",
        publish="blue-green",
        only_changed=True,
        vars={"fail_tests": True},
        expect=Outcome.FAILED,
    )
    assert "assert_order_subtotals_match_items" in failed.verdict
    assert failed.verdict.endswith(
        f"nothing published: consumers read what they read before ({failed.published.version} kept)"
    ), failed.verdict  # type: ignore[union-attr]
    assert failed.counts.get("success", 0) > 10  # its models did build...
    assert shop.consumer_tables("bg") == before  # ...and consumers read what they read
    assert failed.published is not None and failed.published.version in versions_of(shop, "bg")

    report = markdown_report(failed, [])  # the run's Prefect artifact
    assert "- blue-green: nothing published: consumers read what they read before" in report
    assert "ferry rollback" not in report

    # What the failed run built was never published: the next run builds it again.
    passed = shop.build("bg", publish="blue-green", only_changed=True)
    assert failed.changes is not None and passed.changes is not None
    assert set(failed.changes.ran) <= set(passed.changes.ran)
    assert "model.shop.fct_orders" in passed.changes.ran
    assert "- to return to the previous version: `ferry rollback --env bg`" in markdown_report(
        passed, []
    )
    assert shop.consumer_tables("bg") != before
    assert failed.published.version not in versions_of(shop, "bg")  # dropped: never published
    assert passed.published is not None and passed.published.version in versions_of(shop, "bg")


# PostgreSQL alone, with a read-only role: on DuckDB, rollback-local and `ferry rollback` of the
# local stack (tests/e2e/test_local_stack.py) and the README's commands roll back and refuse.
@pytest.mark.parametrize("shop", ["postgres"], indirect=True)
def test_rollback_reads_the_previous_version_again_and_refuses_one_no_longer_kept(shop, capsys):
    reader = _ReadOnlyRole(shop) if shop.warehouse == "postgres" else None
    shop.load("bg", "--as-of", "2026-11-30")
    first = shop.build("bg", publish="blue-green", exclude=UNTESTED)
    v1 = shop.consumer_tables("bg")
    if reader:
        reader.grant()
        assert reader.reads() == {name: len(rows) for name, rows in v1.items()}

    shop.load("bg", "--late-batch")
    second = shop.build("bg", publish="blue-green", exclude=UNTESTED)
    v2 = shop.consumer_tables("bg")
    assert v2 != v1

    capsys.readouterr()
    assert shop.rollback("bg") == ExitCode.OK
    assert f"consumers read {first.published.version} again" in capsys.readouterr().out  # type: ignore[union-attr]
    assert shop.consumer_tables("bg") == v1  # row for row
    if reader:
        assert reader.reads() == {name: len(rows) for name, rows in v1.items()}

    assert shop.rollback("bg") == ExitCode.OK  # back again: the one rolled back from
    assert shop.consumer_tables("bg") == v2
    assert shop.rollback("bg", "--to", first.run_id) == ExitCode.OK  # by the run that built it
    assert shop.consumer_tables("bg") == v1

    # A third publish keeps 2 versions: the ones consumers read most recently (it, and the
    # first, rolled back to last); the second is dropped.
    shop.load("bg", "--late-batch")
    shop.build("bg", publish="blue-green", exclude=UNTESTED)
    v3 = shop.consumer_tables("bg")
    capsys.readouterr()
    assert shop.rollback("bg", "--to", second.run_id) == ExitCode.INVALID
    said = capsys.readouterr().err
    assert said.startswith("ferry rollback: no kept version is") and "(kept: " in said, said
    assert shop.consumer_tables("bg") == v3  # nothing changed
    assert shop.rollback("bg") == ExitCode.OK
    assert shop.consumer_tables("bg") == v1
    if reader:
        assert reader.reads() == {name: len(rows) for name, rows in v1.items()}
        reader.drop()


class _ReadOnlyRole:
    """A PostgreSQL role granted SELECT on what consumers read, as a BI tool would be."""

    def __init__(self, shop: Shop) -> None:
        self.shop = shop
        self.role = f"ferry_ro_{uuid.uuid4().hex[:8]}"

    def _schemas(self) -> list[str]:
        return [
            s
            for s in self.shop.schemas("bg")
            if "__" not in s and not s.endswith(("raw", "ledger"))
        ]

    def grant(self) -> None:
        with psycopg2.connect(DSN) as conn, conn.cursor() as cur:
            cur.execute(f'create role "{self.role}" nologin')
            for schema in self._schemas():
                cur.execute(f'grant usage on schema "{schema}" to "{self.role}"')
                cur.execute(f'grant select on all tables in schema "{schema}" to "{self.role}"')

    def reads(self) -> dict[str, int]:
        """The row count of every relation consumers read, read as the role."""
        found = {}
        with psycopg2.connect(DSN) as conn, conn.cursor() as cur:
            cur.execute(f'set role "{self.role}"')
            for name in self.shop.consumer_tables("bg"):
                schema, relation = name.replace("<side>", self.shop.location("bg")).split(".")
                cur.execute(f'select count(*) from "{schema}"."{relation}"')
                found[name] = cur.fetchone()[0]  # type: ignore[index]
        return found

    def drop(self) -> None:
        with psycopg2.connect(DSN) as conn, conn.cursor() as cur:
            cur.execute(f'drop owned by "{self.role}"')
            cur.execute(f'drop role "{self.role}"')


@pytest.mark.parametrize("shop", ["postgres"], indirect=True)
def test_a_reader_never_sees_one_model_new_and_another_old_during_a_run(shop):
    shop.load("bg", "--as-of", "2026-11-30")
    shop.build("bg", publish="blue-green", exclude=UNTESTED)
    schema = shop.location("bg")
    # One statement, two related models: every order of fct_orders is counted once in
    # dim_customers.order_count, in the same version. Named in the order the publish locks
    # them (by name): a reader naming them the other way round can deadlock with it, and
    # PostgreSQL then cancels one of the two (docs/architecture.md).
    query = (
        f'select (select sum(order_count) from "{schema}".dim_customers), '
        f'(select count(*) from "{schema}".fct_orders)'
    )
    seen: list[tuple[int, int]] = []
    failures: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        try:
            conn = psycopg2.connect(DSN)
            conn.autocommit = True
            with conn.cursor() as cur:
                while not done.is_set() or len(seen) < 3:
                    cur.execute(query)
                    seen.append(cur.fetchone())  # type: ignore[arg-type]
            conn.close()
        except BaseException as exc:  # the test fails with it below
            failures.append(exc)

    shop.load("bg", "--late-batch")
    reader = threading.Thread(target=read)
    reader.start()
    try:
        shop.build("bg", publish="blue-green", exclude=UNTESTED)
        after = len(seen)
    finally:
        done.set()
        reader.join(timeout=60)
    assert not failures, failures
    mixed = [pair for pair in seen if pair[0] != pair[1]]
    assert mixed == [], f"{len(mixed)} of {len(seen)} reads mixed two versions: {mixed[:3]}"
    assert len({pair for pair in seen}) == 2 and after > 10, seen  # it read across the switch


@pytest.mark.parametrize("shop", ["duckdb"], indirect=True)
def test_a_copy_that_fails_stops_the_run_before_dbt_and_changes_nothing(shop):
    shop.load("bg", "--as-of", "2026-11-30")
    first = shop.build("bg", publish="blue-green", exclude=UNTESTED)

    def marts() -> dict[str, list[tuple]]:
        con = duckdb.connect(shop.location("bg"))
        try:
            return {
                name: sorted(con.execute(f"select * from main.{name}").fetchall())
                for name in ("fct_orders", "dim_customers", "fct_daily_revenue")
            }
        finally:
            con.close()

    before = marts()
    con = duckdb.connect(shop.location("bg"))  # what the incremental model continues from, gone
    con.execute(f'drop table "main__{first.published.version}".fct_order_items')  # type: ignore[union-attr]
    con.close()
    shop.load("bg", "--late-batch")

    failed = shop.build("bg", publish="blue-green", exclude=UNTESTED, expect=Outcome.FAILED)
    assert failed.verdict.startswith(
        "dbt build failed: could not copy what incremental models continue from:"
    ), failed.verdict
    assert failed.nodes_total == 0  # dbt did not run
    assert marts() == before
