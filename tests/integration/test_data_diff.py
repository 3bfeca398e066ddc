"""`ferry ci diff` on DuckDB and PostgreSQL with the example project: production is built from
the generator's data, then one pull request changes several models at once, each in one way the
issue names - a logic change that moves one column in a known number of rows (and a sensitive
column whose values must never show), a column added and one dropped, rows filtered out under a
composite key, a comment only, an ephemeral model's filter seen through the keyless model that
reads it, a new model, a removed one. Every expected count is computed here, straight from
production's tables, independently of ferry's SQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flows.ci.diff.records import DataDiff, DiffStatus
from flows.cli import main
from flows.exit_codes import ExitCode
from flows.run.owner import run
from flows.run.request import RunRequest
from flows.run.verdict import Outcome
from tests.conftest import load_generator, make_settings

pytestmark = pytest.mark.integration

DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"

# Models only production has: a keyless model reading an ephemeral one, and one the PR deletes.
PROD_ONLY = {
    "models/intermediate/web/int_sessions_channels.sql": (
        "{{ config(materialized='ephemeral') }}\n"
        "select channel, customer_id is not null as is_identified, pageviews\n"
        "from {{ ref('stg_web__sessions') }}\n"
    ),
    "models/marts/marketing/fct_channel_mix.sql": (
        "select channel, is_identified, pageviews from {{ ref('int_sessions_channels') }}\n"
    ),
    "models/marts/marketing/fct_to_remove.sql": "select 1 as id\n",
}


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def pull_request(project: Path, cutoff: str) -> None:
    """The pull request's edits, one model each."""
    marts = project / "models" / "marts"
    # (a) a logic change: email sessions count one more pageview; country codes lowercased,
    # and country_code is marked sensitive.
    edit(
        marts / "marketing" / "fct_sessions.sql",
        "sessions.pageviews,",
        "case when sessions.channel = 'email' then sessions.pageviews + 1 "
        "else sessions.pageviews end as pageviews,",
    )
    edit(
        marts / "marketing" / "fct_sessions.sql",
        "customers.country_code,",
        "lower(customers.country_code) as country_code,",
    )
    edit(
        marts / "marketing" / "_marketing__models.yml",
        "      - name: channel\n",
        "      - name: country_code\n        meta:\n          sensitive: true\n"
        "      - name: channel\n",
    )
    # (b) a column added, one dropped.
    edit(
        marts / "core" / "dim_products.sql",
        "        products.category,\n",
        "        1 as pr_flag,\n",
    )
    # (c) rows filtered out, under a composite key declared in meta.
    edit(
        marts / "finance" / "fct_daily_revenue.sql",
        "    from orders\n",
        f"    from orders\n\n    where order_date >= cast('{cutoff}' as date)\n",
    )
    edit(
        marts / "finance" / "_finance__models.yml",
        "    description: One row per order date with order counts and revenue.\n",
        "    description: One row per order date with order counts and revenue.\n"
        "    meta:\n      ferry:\n        key: [order_date, order_month]\n",
    )
    # (d) nothing in the data: a comment.
    edit(marts / "core" / "dim_customers.sql", "with\n", "-- reviewed: no change\nwith\n")
    # The ephemeral model filters; the keyless model reading it loses those rows.
    edit(
        project / "models" / "intermediate" / "web" / "int_sessions_channels.sql",
        "from {{ ref('stg_web__sessions') }}",
        "from {{ ref('stg_web__sessions') }} where pageviews > 1",
    )
    # New and removed.
    (marts / "marketing" / "fct_channel_counts.sql").write_text(
        "select channel, count(*) as sessions from {{ ref('fct_sessions') }} group by channel\n"
    )
    (marts / "marketing" / "fct_to_remove.sql").unlink()


class Production:
    """Production's tables, read directly (not through ferry)."""

    def __init__(self, kind: str, schema: str, duckdb_path: Path) -> None:
        self.kind, self.schema, self.duckdb_path = kind, schema, duckdb_path

    def one(self, sql: str) -> Any:
        sql = sql.replace("{prod}", self.schema)
        if self.kind == "duckdb":
            import duckdb

            with duckdb.connect(str(self.duckdb_path)) as con:  # dbt-duckdb may hold it open
                return con.execute(sql).fetchone()[0]  # type: ignore[index]
        import psycopg2

        with psycopg2.connect(DSN) as conn, conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchone()[0]  # type: ignore[index]


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    if kind == "postgres":
        request.getfixturevalue("pg_schema")
    return kind


def test_a_pull_request_diff_counts_what_each_change_did(
    warehouse_kind, shop_project, tmp_path, monkeypatch, capsys
):
    kind = warehouse_kind
    project = shop_project
    for name, text in PROD_ONLY.items():
        (project / name).write_text(text)
    generator = load_generator(project)
    if kind == "duckdb":
        assert (
            generator.main(["--target", "duckdb", "--duckdb-path", str(tmp_path / "shop.duckdb")])
            == 0
        )
        prod_schema, raw_schema = "main", "main_raw"
    else:
        import os

        prod_schema = os.environ["FERRY_PG_SCHEMA"]
        raw_schema = f"{prod_schema}_raw"
        assert generator.main(["--target", "postgres"]) == 0
    store = str(tmp_path / "store")
    prod = make_settings(project, tmp_path, env="prod", artifacts=store)
    for command in ("seed", "run"):  # dbt's tests are not what this is about
        built = run(RunRequest.build(command=command, target=kind), prod).summary
        assert built.outcome is Outcome.SUCCESS, built.verdict

    wh = Production(kind, prod_schema, tmp_path / "shop.duckdb")
    cutoff = str(wh.one("select min(order_date) + 20 from {prod}.fct_daily_revenue"))[:10]
    expected = {
        "sessions_email": wh.one(
            "select count(*) from {prod}.fct_sessions "
            "where channel = 'email' and pageviews is not null"
        ),
        "sessions_country": wh.one(
            "select count(*) from {prod}.fct_sessions where country_code <> lower(country_code)"
        ),
        "sessions": wh.one("select count(*) from {prod}.fct_sessions"),
        "revenue_days_cut": wh.one(
            f"select count(*) from {{prod}}.fct_daily_revenue where order_date < '{cutoff}'"
        ),
        "revenue_days": wh.one("select count(*) from {prod}.fct_daily_revenue"),
        "products": wh.one("select count(*) from {prod}.dim_products"),
        "customers": wh.one("select count(*) from {prod}.dim_customers"),
        "mix_filtered": wh.one(
            "select count(*) from {prod}.fct_channel_mix where not (pageviews > 1) "
            "or pageviews is null"
        ),
        "mix": wh.one("select count(*) from {prod}.fct_channel_mix"),
        "channels": wh.one("select count(distinct channel) from {prod}.fct_sessions"),
        "email_changed_both": wh.one(  # sessions whose pageviews and country both change
            "select count(*) from {prod}.fct_sessions where channel = 'email' and "
            "pageviews is not null and country_code <> lower(country_code)"
        ),
    }
    assert expected["sessions_email"] > 0 and expected["revenue_days_cut"] > 0
    assert expected["sessions_country"] > 0 and expected["mix_filtered"] > 0

    pull_request(project, cutoff)
    ci_schema = f"ci_pr_7_{prod_schema}"[:60] if kind == "postgres" else "ci_pr_7"
    ci = make_settings(
        project,
        tmp_path,
        env="ci-pr-7",
        artifacts=str(tmp_path / "ci"),
        state_from=store,
        target_schema=ci_schema,
    )
    slim = RunRequest.build(
        command="run",
        select="state:modified+",
        defer=True,
        target=kind,
        vars={"raw_schema": raw_schema},
    )
    report = run(slim, ci)
    assert report.summary.outcome is Outcome.SUCCESS, report.summary.verdict
    slim_json = tmp_path / "slim-ci.json"
    slim_json.write_text(report.summary.model_dump_json())

    monkeypatch.setenv("FERRY_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("FERRY_STATE_FROM", store)
    argv = ["ci", "diff", str(slim_json), "--project-dir", str(project), "--profiles-dir",
            str(project), "--target", kind, "--json"]  # fmt: skip
    capsys.readouterr()  # what the builds printed
    assert main(argv) == ExitCode.OK, capsys.readouterr().err
    printed = DataDiff.model_validate_json(capsys.readouterr().out)
    stored = Path(str(report.summary.artifacts)) / "diff.json"
    assert DataDiff.model_validate_json(stored.read_bytes()) == printed
    models = {m.name: m for m in printed.models}

    # (a) a known number of rows changed in one column; the sensitive one's values never shown.
    sessions = models["fct_sessions"]
    assert sessions.status is DiffStatus.CHANGED and sessions.key == ["session_id"]
    assert sessions.key_from == "tests"
    assert (sessions.added, sessions.removed) == (0, 0)
    assert sessions.changed_by_column == {
        "pageviews": expected["sessions_email"],
        "country_code": expected["sessions_country"],
    } or sessions.changed_by_column == {
        "country_code": expected["sessions_country"],
        "pageviews": expected["sessions_email"],
    }
    assert sessions.changed == (
        expected["sessions_email"] + expected["sessions_country"] - expected["email_changed_both"]
    )
    assert sessions.rows.base == sessions.rows.pr == expected["sessions"]
    changed_examples = [e for e in sessions.examples if e.kind == "changed"]
    assert 0 < len(changed_examples) <= 5
    for example in changed_examples:
        if "country_code" in example.changed:
            assert example.changed["country_code"] is None  # sensitive: no values
        if "pageviews" in example.changed:
            before, after = example.changed["pageviews"]  # type: ignore[misc]
            assert int(after or 0) == int(before or 0) + 1
    stored_text = stored.read_text()
    country_codes = {c.lower() for c in ("US", "GB", "DE", "FR", "NL")}
    assert not any(f'"{code}"' in stored_text for code in country_codes)

    # (b) a column added, one dropped; the rest identical.
    products = models["dim_products"]
    assert products.status is DiffStatus.CHANGED
    assert products.columns.added == ["pr_flag"] and products.columns.removed == ["category"]
    assert (products.added, products.removed, products.changed) == (0, 0, 0)
    assert products.rows.base == products.rows.pr == expected["products"]

    # (c) rows filtered out, matched by a composite key from meta.
    revenue = models["fct_daily_revenue"]
    assert revenue.key == ["order_date", "order_month"] and revenue.key_from == "meta"
    assert (revenue.removed, revenue.added, revenue.changed) == (expected["revenue_days_cut"], 0, 0)
    assert revenue.rows.base == expected["revenue_days"]
    assert revenue.rows.pr == expected["revenue_days"] - expected["revenue_days_cut"]
    assert {e.kind for e in revenue.examples} == {"removed"}
    assert all(e.key["order_date"] < cutoff for e in revenue.examples)  # type: ignore[operator]

    # (d) a comment: rebuilt, identical.
    customers = models["dim_customers"]
    assert customers.status is DiffStatus.IDENTICAL, customers
    assert (customers.added, customers.removed, customers.changed) == (0, 0, 0)
    assert customers.rows.base == customers.rows.pr == expected["customers"]

    # Without a key, through an ephemeral model: a multiset of rows removed.
    mix = models["fct_channel_mix"]
    assert mix.key is None and mix.status is DiffStatus.CHANGED
    assert (mix.removed, mix.added) == (expected["mix_filtered"], 0)
    assert mix.rows.base == expected["mix"]
    pageviews = next(p for p in mix.profiles if p.column == "pageviews")
    assert pageviews.min is not None and pageviews.min[1] == 2  # > 1 is all that is left
    assert models["int_sessions_channels"].status is DiffStatus.SKIPPED
    assert "ephemeral" in str(models["int_sessions_channels"].reason)

    # New and removed.
    assert models["fct_channel_counts"].status is DiffStatus.NEW
    assert models["fct_channel_counts"].rows.pr == expected["channels"]
    assert models["fct_to_remove"].status is DiffStatus.REMOVED
    assert models["fct_to_remove"].rows.base == 1

    # The comment: the Slim CI summary, then the data section with the changed models folded.
    out = tmp_path / "comment.md"
    assert main(["ci", "report", str(slim_json), "--out", str(out)]) == ExitCode.OK
    comment = out.read_text()
    assert comment.index("Slim CI") < comment.index("### What changed in the data")
    assert "<summary><code>fct_sessions</code>" in comment
    assert f"| `fct_daily_revenue` | 🔶 changed | {expected['revenue_days']:,} → " in comment

    if kind == "duckdb":  # the options, on the same pull request (one warehouse is enough)
        limits_are_kept(argv, capsys, sessions.changed)


def limits_are_kept(argv: list[str], capsys: Any, sessions_changed: int) -> None:
    """--no-values: counts only; --budget-s: the models not reached are listed; --max-rows: a
    sample of keys, the same on both sides."""
    assert main([*argv, "--no-values"]) == ExitCode.OK
    found = DataDiff.model_validate_json(capsys.readouterr().out)
    sessions = next(m for m in found.models if m.name == "fct_sessions")
    assert sessions.status is DiffStatus.CHANGED and sessions.changed == sessions_changed
    assert sessions.examples == [] and not found.values_shown
    assert all(p.min is None for m in found.models for p in m.profiles)

    assert (
        main([*argv, "--budget-s", "0.000001"]) == ExitCode.OK
    )  # spent by the first model at most
    found = DataDiff.model_validate_json(capsys.readouterr().out)
    assert found.models[-1].status is DiffStatus.SKIPPED
    skipped = [m for m in found.models if m.status is DiffStatus.SKIPPED]
    assert all(str(m.reason).startswith(("budget:", "ephemeral")) for m in skipped)

    assert main([*argv, "--max-rows", "1000"]) == ExitCode.OK
    found = DataDiff.model_validate_json(capsys.readouterr().out)
    sessions = next(m for m in found.models if m.name == "fct_sessions")
    assert sessions.sample is not None and 0 < sessions.sample < 1
    assert 0 < sessions.changed < sessions_changed  # type: ignore[operator]
    assert (sessions.added, sessions.removed) == (0, 0)


def test_bad_input_is_refused_and_an_unreachable_warehouse_fails(
    shop_duckdb, tmp_path, monkeypatch, capsys
):
    """No such run or no production state: 2 with a message. The warehouse down: 1."""
    project = shop_duckdb
    monkeypatch.setenv("FERRY_WORK_DIR", str(tmp_path / "work"))
    flags = ["--project-dir", str(project), "--profiles-dir", str(project)]
    assert main(["ci", "diff", str(tmp_path / "nope"), *flags]) == ExitCode.INVALID
    assert capsys.readouterr().err.startswith(f"ferry ci diff: {tmp_path / 'nope'} holds no run")
    for flag, value, says in (
        ("--max-rows", "0", "must be above 0, not 0"),
        ("--budget-s", "-1", "must be above 0, not -1"),
        ("--examples", "-1", "must be at least 0, not -1"),
    ):
        with pytest.raises(SystemExit) as refused:  # argparse's own usage error: exit 2
            main(["ci", "diff", str(tmp_path / "nope"), flag, value])
        assert refused.value.code == ExitCode.INVALID and says in capsys.readouterr().err, flag

    ci = make_settings(project, tmp_path, env="ci-pr-9", artifacts=str(tmp_path / "ci"))
    slim = run(RunRequest.build(command="run", select="stg_web__sessions"), ci).summary
    capsys.readouterr()  # what the run printed
    flags += ["--state-from", str(tmp_path / "empty")]
    assert main(["ci", "diff", str(slim.artifacts), *flags]) == ExitCode.INVALID
    err = capsys.readouterr().err
    assert "no state manifest of project 'shop' in environment 'prod'" in err, err
    assert "--state-env / --state-from" in err and "Traceback" not in err

    prod_store = tmp_path / "ci"  # the run left a state of its own environment
    flags[-1] = str(prod_store)
    monkeypatch.setenv("FERRY_PG_PORT", "1")  # nothing listens there
    argv = ["ci", "diff", str(slim.artifacts), *flags, "--state-env", "ci-pr-9"]
    assert main([*argv, "--target", "postgres"]) == ExitCode.FAILED
    err = capsys.readouterr().err
    assert err.startswith("ferry ci diff: ") and "Traceback" not in err, err


def test_the_sql_pinned_for_redshift_answers_as_postgres_does(pg_schema):
    """Redshift cannot run here; PostgreSQL, its ancestor, can run the very statements sent to
    it (with FNV_HASH stood in by a function of the same shape) and must answer exactly as
    PostgreSQL's own statements do, on data with every kind of difference."""
    import psycopg2

    from flows.ci.diff.sql import DIALECTS, Compared, Pair

    conn = psycopg2.connect(DSN)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'create schema "{pg_schema}"; set search_path to "{pg_schema}"')
        cur.execute(
            "create function fnv_hash(value text) returns bigint language sql immutable "
            "as 'select hashtextextended(value, 7)'"
        )
        cur.execute(
            "create table base as select i as order_id, i % 3 as line_no, i * 1.5 as amount, "
            "cast(i % 7 as integer) as status, 'u' || i || '@x.org' as email "
            "from generate_series(1, 3000) as i"
        )
        cur.execute(
            "create table pr as select order_id, line_no, "
            "case when order_id % 50 = 0 then amount + 1 else amount end as amount, "
            "cast(status as text) as status, "
            "case when order_id % 70 = 0 then null else email end as email "
            "from base where order_id % 97 <> 0 "
            "union all select 5000 + i, 0, 1, '1', null from generate_series(1, 11) as i"
        )
        key = ["order_id", "line_no"]
        columns = [
            Compared("amount"),
            Compared("status", as_text=True),
            Compared("email", True, True),
        ]
        answers = {}
        for name in ("postgres", "redshift"):
            pair = Pair(f'"{pg_schema}"."base"', f'"{pg_schema}"."pr"', DIALECTS[name])
            found = []
            for sql in (
                pair.counts(key),
                pair.duplicate_keys(key, None),
                pair.keyed(key, columns, None),
                pair.examples(key, columns, None, 3),
                pair.multiset(columns, None),
                pair.profile(columns, {"amount"}),
            ):
                cur.execute(sql)
                found.append(cur.fetchall())
            for sql in (pair.keyed(key, columns, 2500), pair.multiset(columns, 2500)):
                cur.execute(sql)  # a sample: another hash, so only its shape is compared
                found.append(len(cur.fetchall()))
            answers[name] = found
    conn.close()
    assert answers["redshift"] == answers["postgres"]
    keyed = answers["postgres"][2][0]
    # 3000 rows, 30 (every 97th) removed, 11 added; amount changed on every 50th kept row,
    # email nulled on every 70th, status compared as text: '3' = '3'.
    removed, added = 3000 // 97, 11
    amount = sum(1 for i in range(1, 3001) if i % 50 == 0 and i % 97 != 0)
    email = sum(1 for i in range(1, 3001) if i % 70 == 0 and i % 97 != 0)
    both = sum(1 for i in range(1, 3001) if i % 350 == 0 and i % 97 != 0)
    assert tuple(keyed) == (3000, 3000 - removed + added, removed, added, amount + email - both,
                            amount, 0, email)  # fmt: skip


def test_a_model_the_warehouse_cannot_compare_is_its_error_and_the_next_goes_on(
    shop_project, pg_schema, tmp_path
):
    """PostgreSQL has no equality for `json`: that model is an `error` with the warehouse's
    reason; the next model is still compared on the same connection, and no lock on
    production's tables outlives the diff's statements (a production build would wait)."""
    import psycopg2

    from flows.ci.diff.compare import diff
    from flows.ci.diff.targets import Relation, Target
    from flows.dbt.profiles import DbtProject
    from flows.dbt.warehouse import open_warehouse

    conn = psycopg2.connect(DSN)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'create schema "{pg_schema}"; set search_path to "{pg_schema}"')
        for name in ("json_base", "json_pr"):
            cur.execute(f"create table {name} as select 1 as id, '{{}}'::json as payload")
        cur.execute(
            "create table ok_base as select i as id, i * 2 as v from generate_series(1, 9) i"
        )
        cur.execute(
            "create table ok_pr as select id, case when id = 3 then 0 else v end as v from ok_base"
        )

    def target(name: str) -> Target:
        return Target(
            unique_id=f"model.shop.{name}",
            name=name,
            pr=Relation("test", pg_schema, f"{name}_pr"),
            base=Relation("test", pg_schema, f"{name}_base"),
            key=("id",),
            key_from="tests",
        )

    project = DbtProject.load(shop_project, shop_project)
    with open_warehouse(project, "postgres", tmp_path, check=True) as warehouse:
        found = diff(warehouse, [target("json"), target("ok")], run_id="r", project="shop",
                     state_env="prod")  # fmt: skip
        with conn.cursor() as cur:  # another session, while the diff's connection is open
            cur.execute(
                "select count(*) from pg_locks l join pg_class c on c.oid = l.relation "
                "where c.relname in ('ok_base', 'ok_pr', 'json_base', 'json_pr')"
            )
            assert cur.fetchone() == (0,)
    conn.close()
    broken, ok = found.models
    assert broken.status is DiffStatus.ERROR
    assert "operator does not exist: json = json" in str(broken.reason)
    assert ok.status is DiffStatus.CHANGED and ok.changed == 1
    assert ok.changed_by_column == {"v": 1} and ok.examples[0].changed == {"v": ("6", "0")}
