"""Which columns the data diff treats as numbers (min, max, mean): dbt's own test knows
PostgreSQL's type names; DuckDB's and Redshift's others are recognised too."""

from __future__ import annotations

import pytest
from dbt.adapters.base.column import Column as DbtColumn

from flows.dbt.warehouse import is_number


@pytest.mark.parametrize(
    "dtype",
    ["INTEGER", "BIGINT", "HUGEINT", "UBIGINT", "TINYINT", "DOUBLE", "DECIMAL(18,3)",
     "numeric", "real", "float8", "int4", "double precision", "smallint"],
)  # fmt: skip
def test_number_types(dtype):
    assert is_number(DbtColumn("c", dtype))


@pytest.mark.parametrize(
    "dtype", ["VARCHAR", "text", "DATE", "BOOLEAN", "TIMESTAMP", "INTERVAL", "json", "point"]
)
def test_other_types(dtype):
    assert not is_number(DbtColumn("c", dtype))
