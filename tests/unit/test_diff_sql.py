"""The data diff's SQL per warehouse. Redshift cannot run here, so what is sent to it is pinned
(golden files in tests/fixtures/diff_sql/) and parsed in sqlglot's Redshift dialect; every
dialect's statements parse in their own, and none uses what Redshift lacks.

After an intended change to the SQL: `UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_diff_sql.py`
rewrites the golden files; review their diff like code.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlglot
from sqlglot.errors import ErrorLevel

from flows.ci.diff.sql import DIALECTS, SAMPLE_BUCKETS, Compared, Pair, dialect_of
from tests.golden import assert_golden

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "diff_sql"
KEY = ["order_id", "line_no"]
COLUMNS = [
    Compared("amount"),
    Compared("status", as_text=True),  # its type changed: compared as text
    Compared("email", sensitive=True),  # never selected as a value
]
SQLGLOT = {"duckdb": "duckdb", "postgres": "postgres", "redshift": "redshift"}


def statements(dialect: str) -> dict[str, str]:
    pair = Pair(
        '"dev"."analytics"."fct_orders"', '"dev"."ci_pr_42"."fct_orders"', DIALECTS[dialect]
    )
    return {
        "counts": pair.counts(KEY),
        "duplicate_keys": pair.duplicate_keys(KEY, share=1000),
        "keyed": pair.keyed(KEY, COLUMNS, share=None),
        "keyed_sampled": pair.keyed(KEY, COLUMNS, share=1000),
        "examples": pair.examples(KEY, COLUMNS, share=None, per_kind=5),
        "multiset": pair.multiset(COLUMNS, share=None),
        "multiset_sampled": pair.multiset(COLUMNS, share=1000),
        "profile": pair.profile(COLUMNS, numeric={"amount"}),
    }


@pytest.mark.parametrize("name", sorted(statements("redshift")))
def test_what_is_sent_to_redshift_is_pinned(name):
    assert_golden(GOLDEN / "redshift" / f"{name}.sql", statements("redshift")[name] + "\n")


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_every_statement_parses_in_its_warehouse_dialect(dialect):
    for name, sql in statements(dialect).items():
        parsed = sqlglot.parse(sql, read=SQLGLOT[dialect], error_level=ErrorLevel.RAISE)
        assert len(parsed) == 1 and parsed[0] is not None, name


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_no_statement_uses_what_redshift_lacks(dialect):
    """One portable core: EXCEPT ALL, IS DISTINCT FROM and FILTER are not on Redshift."""
    for name, sql in statements(dialect).items():
        lowered = " ".join(sql.lower().split())
        for missing in ("except all", "is distinct from", "filter (", "minus all"):
            assert missing not in lowered, (dialect, name, missing)


def test_redshift_samples_by_fnv_hash_and_compares_whole_text():
    redshift = statements("redshift")
    assert "fnv_hash(" in redshift["keyed_sampled"]
    assert (
        f"< {1000}" in redshift["keyed_sampled"]
        and str(SAMPLE_BUCKETS) in redshift["keyed_sampled"]
    )
    assert "varchar(65535)" in redshift["keyed"]  # varchar alone would be varchar(256): cut
    assert "hashtextextended(" in statements("postgres")["keyed_sampled"]
    assert "hash(" in statements("duckdb")["keyed_sampled"]


def test_a_sensitive_column_is_compared_but_its_values_are_never_selected():
    for dialect in DIALECTS:
        examples = statements(dialect)["examples"]
        assert '"email"' in examples  # compared...
        assert 'cast(b."email"' not in examples and 'cast(p."email"' not in examples  # ...only
        profile = statements(dialect)["profile"]
        assert 'min(cast("amount"' in profile and 'min(cast("email"' not in profile


def test_other_adapters_get_postgres_sql():
    assert dialect_of("snowflake") is DIALECTS["postgres"]
    assert dialect_of("redshift") is DIALECTS["redshift"]
