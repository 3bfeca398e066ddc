"""Pull-request schemas on PostgreSQL (the stand-in for Redshift): `ferry ci schema drop` and
`sweep` drop exactly the pull request's schemas and never another - not a lookalike, not an
open pull request's, not production's. GitHub is the real HTTP server on 127.0.0.1 of
tests/integration/conftest.py. Bad input exits 2, GitHub or the warehouse failing 1; either way
nothing is dropped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg2
import pytest

from flows.cli import main
from flows.exit_codes import ExitCode
from tests.conftest import SHOP

pytestmark = pytest.mark.integration

DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
PREFIX = "fcit"  # this test's own prefix: it can never touch another suite's schemas
SCHEMAS = [
    f"{PREFIX}_pr_3",
    f"{PREFIX}_pr_3_staging",
    f"{PREFIX}_pr_31",
    f"{PREFIX}_pr_31_marts",
    f"{PREFIX}_pr_4",
    f"{PREFIX}x_pr_3",
    f"{PREFIX}_prod",
    f"{PREFIX}_pr_x",
]


def schemas() -> set[str]:
    with psycopg2.connect(DSN) as conn, conn.cursor() as cur:
        cur.execute("select nspname from pg_namespace where nspname like %s", (f"{PREFIX}%",))
        return {name for (name,) in cur.fetchall()}


@pytest.fixture
def warehouse(monkeypatch, tmp_path) -> Iterator[None]:
    conn = psycopg2.connect(DSN)
    conn.autocommit = True
    with conn.cursor() as cur:
        for schema in schemas():
            cur.execute(f'drop schema "{schema}" cascade')
        for schema in SCHEMAS:
            cur.execute(f'create schema "{schema}"')
            cur.execute(f'create table "{schema}".t as select 1 as x')
    monkeypatch.setenv("FERRY_PROJECT_DIR", str(SHOP))
    monkeypatch.setenv("FERRY_PROFILES_DIR", str(SHOP))
    yield
    with conn.cursor() as cur:
        for schema in schemas():
            cur.execute(f'drop schema "{schema}" cascade')
    conn.close()


def ci_schema(*args: str, prefix: str = PREFIX, target: str = "postgres") -> int:
    return main(["ci", "schema", *args, "--prefix", prefix, "--target", target])


def test_dropping_a_pull_request_drops_its_schemas_only(warehouse, capsys):
    assert ci_schema("drop", "--pr", "3", "--dry-run") == ExitCode.OK
    assert schemas() == set(SCHEMAS)
    assert f"would drop {PREFIX}_pr_3_staging" in capsys.readouterr().out

    assert ci_schema("drop", "--pr", "3") == ExitCode.OK
    assert schemas() == set(SCHEMAS) - {f"{PREFIX}_pr_3", f"{PREFIX}_pr_3_staging"}
    assert ci_schema("drop", "--pr", "3") == ExitCode.OK  # again: nothing left, still fine


def test_the_sweep_keeps_open_pull_requests(warehouse):
    assert ci_schema("sweep", "--open-prs", "31") == ExitCode.OK
    assert schemas() == {
        f"{PREFIX}_pr_31",
        f"{PREFIX}_pr_31_marts",
        f"{PREFIX}x_pr_3",
        f"{PREFIX}_prod",
        f"{PREFIX}_pr_x",
    }


def test_the_nightly_sweep_asks_github_which_pull_requests_are_open(warehouse, github):
    github.open_prs = [4, *range(1000, 1150)]  # two pages of open pull requests
    assert ci_schema("sweep", "--open-prs-from-github") == ExitCode.OK
    assert schemas() == {f"{PREFIX}_pr_4", f"{PREFIX}x_pr_3", f"{PREFIX}_prod", f"{PREFIX}_pr_x"}
    assert [c for c in github.calls if c[1] == "/repos/o/r/pulls"] == [
        ("GET", "/repos/o/r/pulls")
    ] * 2


def test_a_github_refusal_drops_nothing(warehouse, github, monkeypatch, capsys):
    monkeypatch.setenv("GITHUB_TOKEN", "wrong")
    assert ci_schema("sweep", "--open-prs-from-github") == ExitCode.FAILED
    err = capsys.readouterr().err
    assert err.startswith("ferry ci schema sweep: GitHub GET /repos/o/r/pulls") and "401" in err
    assert schemas() == set(SCHEMAS)


def test_bad_input_is_refused_and_drops_nothing(warehouse, monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.delenv("FERRY_REDSHIFT_HOST", raising=False)
    cases = [
        (("drop", "--pr", "0"), {}, "pull request number must be positive, got 0"),
        (("drop", "--pr", "3"), {"prefix": "CI"}, "schema prefix 'CI' must be a lowercase"),
        (("drop", "--pr", "3"), {"target": "nope"}, "target 'nope' is not defined in profile"),
        (("drop", "--pr", "3"), {"target": "redshift"}, "'FERRY_REDSHIFT_HOST'"),
        (("sweep", "--open-prs-from-github"), {}, "set GITHUB_REPOSITORY and GITHUB_TOKEN"),
        (("drop", "--pr", "3", "--project-dir", str(tmp_path)), {}, str(tmp_path)),
    ]
    for args, flags, message in cases:
        assert ci_schema(*args, **flags) == ExitCode.INVALID, args
        err = capsys.readouterr().err
        assert err.startswith(f"ferry ci schema {args[0]}: ") and message in err, err
    assert schemas() == set(SCHEMAS)


def test_an_unreachable_warehouse_is_a_failure(warehouse, monkeypatch, capsys):
    monkeypatch.setenv("FERRY_PG_PORT", "1")
    assert ci_schema("drop", "--pr", "3") == ExitCode.FAILED
    err = capsys.readouterr().err  # dbt's logging may come first (in-process, captured)
    assert "\nferry ci schema drop: Database Error" in f"\n{err}", err
    assert "Connection refused" in err
    assert schemas() == set(SCHEMAS)


def test_the_flags_are_the_settings_without_the_environment(warehouse, monkeypatch, capsys):
    """--project-dir and --profiles-dir win over FERRY_*, and are not written into it."""
    monkeypatch.setenv("FERRY_PROJECT_DIR", "/nonexistent")
    monkeypatch.setenv("FERRY_PROFILES_DIR", "/nonexistent")
    flags = ["--project-dir", str(SHOP), "--profiles-dir", str(SHOP)]
    assert ci_schema("drop", "--pr", "3", *flags) == ExitCode.OK, capsys.readouterr().err
    assert f"{PREFIX}_pr_3" not in schemas()
    assert os.environ["FERRY_PROJECT_DIR"] == "/nonexistent"
