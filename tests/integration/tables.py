"""What consumers read on one side of a proof, relation by relation, row for row.

A side is a DuckDB file or a PostgreSQL schema prefix (its schema and `<schema>_<custom>`
ones). Raw tables, dbt's test-failure tables, blue-green's versioned schemas (`...__r<id>`)
and publish ledgers are not what consumers read, so they are left out. Rows are compared as
multisets (duplicates count), both ways.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

import duckdb
import psycopg2

DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"

Warehouse = Literal["duckdb", "postgres"]
Rows = dict[str, Counter[tuple]]


def _read_by_consumers(schema: str) -> bool:
    return not (
        schema.endswith(("raw", "test__audit", "ledger"))
        or "__" in schema
        or schema == "ferry_publish"
    )


def consumer_rows(warehouse: Warehouse, where: str) -> Rows:
    """Every relation consumers read on one side (tables and views), by `<schema>.<name>`
    with the side's prefix left out, so two sides' names match."""
    if warehouse == "duckdb":
        # Not `except` across an ATTACH: dbt-duckdb ran in this process, and DuckDB keeps one
        # instance per file per process.
        con = duckdb.connect(where)
        try:
            names = con.execute(
                "select table_schema, table_name from information_schema.tables "
                "where table_catalog = current_database() order by all"
            ).fetchall()
            return {
                f"{schema}.{name}": Counter(
                    con.execute(f'select * from "{schema}"."{name}"').fetchall()
                )
                for schema, name in names
                if _read_by_consumers(schema)
            }
        finally:
            con.close()
    with psycopg2.connect(DSN) as conn, conn.cursor() as cur:
        cur.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema = %s or table_schema like %s order by 1, 2",
            (where, where.replace("_", r"\_") + r"\_%"),
        )
        found: Rows = {}
        for schema, name in cur.fetchall():
            if schema != where and not _read_by_consumers(schema[len(where) :]):
                continue
            cur.execute(f'select * from "{schema}"."{name}"')
            found["<side>" + schema[len(where) :] + "." + name] = Counter(cur.fetchall())
        return found


def differences(warehouse: Warehouse, a: str, b: str) -> list[str]:
    """What consumers read differently on side `a` and side `b`; [] when equal, row for row."""
    in_a, in_b = consumer_rows(warehouse, a), consumer_rows(warehouse, b)
    assert len(in_a) > 15 and set(in_a) == set(in_b), (sorted(in_a), sorted(in_b))
    return [
        f"{name}: {sum((in_a[name] - in_b[name]).values())} row(s) only in A, "
        f"{sum((in_b[name] - in_a[name]).values())} only in B"
        for name in sorted(in_a)
        if in_a[name] != in_b[name]
    ]
