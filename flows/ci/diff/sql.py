"""The SQL of a data diff, per warehouse: every statement is an aggregate computed where the data
is, so no table is pulled into Python.

One portable core (CTEs, `full outer join`, `case` sums, `group by`, `row_number()`) and a few
per-warehouse words: the text and float types, and the hash a sample of keys is drawn by.
Deliberately avoided because one of the three lacks it: `EXCEPT ALL` and `IS DISTINCT FROM`
(Redshift has neither), `FILTER (WHERE ...)` (Redshift), `limit` inside a set operation's branch.
The multiset difference of a keyless model is one `group by` over both sides' rows: the same
answer as `EXCEPT ALL` both ways, in one scan, on every warehouse.
"""

from __future__ import annotations

from dataclasses import dataclass

SAMPLE_BUCKETS = 10_000
"""Keys are sampled by `hash(key) mod SAMPLE_BUCKETS < n`: the same keys on both sides."""


@dataclass(frozen=True)
class Dialect:
    """The words that differ between warehouses."""

    name: str
    text_type: str
    float_type: str

    def hash_bucket(self, text: str) -> str:
        """A bucket in [0, SAMPLE_BUCKETS) from a text expression, the same on both sides."""
        if self.name == "duckdb":  # hash() is a UBIGINT: never negative
            return f"hash({text}) % {SAMPLE_BUCKETS}"
        if self.name == "redshift":  # 64-bit FNV-1a of the text's bytes, may be negative
            return (
                f"mod(mod(fnv_hash({text}), {SAMPLE_BUCKETS}) + {SAMPLE_BUCKETS}, {SAMPLE_BUCKETS})"
            )
        return (  # PostgreSQL 11+: a bigint, may be negative
            f"mod(mod(hashtextextended({text}, 0), {SAMPLE_BUCKETS}) + {SAMPLE_BUCKETS}, "
            f"{SAMPLE_BUCKETS})"
        )


DIALECTS = {
    "duckdb": Dialect("duckdb", text_type="varchar", float_type="double"),
    "postgres": Dialect("postgres", text_type="text", float_type="double precision"),
    # varchar without a length is varchar(256) on Redshift: values would be cut before compared.
    "redshift": Dialect("redshift", text_type="varchar(65535)", float_type="double precision"),
}


def dialect_of(adapter_type: str) -> Dialect:
    """The dialect of a dbt adapter; PostgreSQL's for the others (the most common ancestor)."""
    return DIALECTS.get(adapter_type, DIALECTS["postgres"])


def _list(items: list[str], indent: int) -> str:
    """Items one per line, comma-separated, at an indent (the SQL stays readable in logs)."""
    return (",\n" + " " * indent).join(items)


def count(relation: str) -> str:
    """Rows of one relation (a model new in, or removed by, the pull request)."""
    return f"select count(*) from {relation}"


def quote(identifier: str) -> str:
    """A quoted identifier: double quotes on all three warehouses."""
    return '"' + identifier.replace('"', '""') + '"'


@dataclass(frozen=True)
class Compared:
    """A column both sides have; compared as text when its type differs between them."""

    name: str
    as_text: bool = False
    sensitive: bool = False


@dataclass(frozen=True)
class Pair:
    """The two relations, quoted, and how they are compared."""

    base: str
    pr: str
    dialect: Dialect

    # --- shared pieces ---------------------------------------------------------------------
    def _expr(self, column: Compared, alias: str = "") -> str:
        ref = f"{alias}.{quote(column.name)}" if alias else quote(column.name)
        return f"cast({ref} as {self.dialect.text_type})" if column.as_text else ref

    def _text(self, ref: str) -> str:
        return f"coalesce(cast({ref} as {self.dialect.text_type}), '')"

    def _sample(self, columns: list[str], share: int | None) -> str:
        """The `where` that keeps the sampled rows (share of SAMPLE_BUCKETS), or nothing."""
        if share is None:
            return ""
        text = " || '|' || ".join(self._text(quote(c)) for c in columns)
        return f"\n    where {self.dialect.hash_bucket(text)} < {share}"

    def _side(
        self,
        relation: str,
        key: list[str],
        columns: list[Compared],
        share: int | None,
    ) -> str:
        select = [quote(k) for k in key]
        select += [
            f"{self._expr(c)} as {quote(c.name)}" if c.as_text else quote(c.name) for c in columns
        ]
        select.append("1 as __ferry_in")
        return f"select\n        {_list(select, 8)}\n    from {relation}" + self._sample(key, share)

    # --- statements ------------------------------------------------------------------------
    def counts(self, key: list[str]) -> str:
        """Rows on each side, and with a key the rows whose key is null: one row (base rows,
        base null keys, pr rows, pr null keys), one scan per side."""
        nulls = " or ".join(f"{quote(k)} is null" for k in key) or "1 = 0"

        def side(relation: str) -> str:
            return (
                f"select count(*) as n, coalesce(sum(case when {nulls} then 1 else 0 end), 0) "
                f"as null_keys from {relation}"
            )

        return (
            "select b.n, b.null_keys, p.n, p.null_keys\n"
            f"from ({side(self.base)}) as b\ncross join ({side(self.pr)}) as p"
        )

    def duplicate_keys(self, key: list[str], share: int | None) -> str:
        """Keys that are null or not unique on each side: one row (base, pr).

        A key that is not one on either side would make the keyed diff's join multiply rows.
        Run before a sampled keyed diff, and to count the culprits when an unsampled one found
        its join multiplied (its joined rows outnumber a side's rows).
        """
        keys = ", ".join(quote(k) for k in key)
        nulls = " or ".join(f"{quote(k)} is null" for k in key)

        def bad(relation: str) -> str:
            return (
                f"(select count(*) from (\n        select {keys} from {relation}"
                f"{self._sample(key, share).replace(chr(10) + '    ', chr(10) + '        ')}\n"
                f"        group by {keys}\n        having count(*) > 1 or max(case when {nulls} "
                "then 1 else 0 end) = 1\n    ) as bad)"
            )

        return f"select\n    {bad(self.base)} as base_bad,\n    {bad(self.pr)} as pr_bad"

    def keyed(self, key: list[str], columns: list[Compared], share: int | None) -> str:
        """The keyed diff: one row of (base rows, pr rows, removed, added, changed, then per
        compared column the rows whose value changed), over the sample when `share` is set."""
        joined = self._joined(key, columns, share)
        any_diff = " + ".join(f"__ferry_d{i}" for i in range(len(columns))) or "0"
        both = "in_base is not null and in_pr is not null"
        select = [
            "sum(case when in_base is not null then 1 else 0 end) as base_rows",
            "sum(case when in_pr is not null then 1 else 0 end) as pr_rows",
            "sum(case when in_pr is null then 1 else 0 end) as removed",
            "sum(case when in_base is null then 1 else 0 end) as added",
            f"sum(case when {both} and {any_diff} > 0 then 1 else 0 end) as changed",
        ]
        select += [
            f"sum(case when {both} then __ferry_d{i} else 0 end) as changed_{i}"
            for i in range(len(columns))
        ]
        return f"{joined}\nselect\n    {_list(select, 4)}\nfrom joined"

    def examples(
        self, key: list[str], columns: list[Compared], share: int | None, per_kind: int
    ) -> str:
        """A few rows per kind (added, removed, changed), first by key: the kind, the key as
        text, then per compared column whether it changed and, unless sensitive, both values
        as text."""
        joined = self._joined(key, columns, share, values=True)
        any_diff = " + ".join(f"__ferry_d{i}" for i in range(len(columns))) or "0"
        kind = (
            "case when in_base is null then 'added' when in_pr is null then 'removed' "
            "else 'changed' end"
        )
        keys = [f"__ferry_k{i}" for i in range(len(key))]
        order = ", ".join(f"__ferry_o{i}" for i in range(len(key)))  # the key's own order
        fields = [*keys]
        for i, column in enumerate(columns):
            fields.append(f"__ferry_d{i}")
            if not column.sensitive:
                fields += [f"__ferry_b{i}", f"__ferry_p{i}"]
        picked = _list([f"{kind} as kind", *fields], 8)
        return (
            f"{joined},\nranked as (\n    select\n        {picked},\n"
            f"        row_number() over (partition by {kind} order by {order}) as rn\n"
            f"    from joined\n    where in_base is null or in_pr is null or {any_diff} > 0\n)\n"
            f"select {', '.join(['kind', *fields])}\nfrom ranked\n"
            f"where rn <= {per_kind}\norder by kind, rn"
        )

    def _joined(
        self, key: list[str], columns: list[Compared], share: int | None, values: bool = False
    ) -> str:
        on = " and ".join(f"b.{quote(k)} = p.{quote(k)}" for k in key)
        select = ["b.__ferry_in as in_base", "p.__ferry_in as in_pr"]
        if values:
            for i, k in enumerate(key):
                either = f"coalesce(b.{quote(k)}, p.{quote(k)})"
                select += [
                    f"cast({either} as {self.dialect.text_type}) as __ferry_k{i}",
                    f"{either} as __ferry_o{i}",
                ]
        for i, column in enumerate(columns):
            b, p = f"b.{quote(column.name)}", f"p.{quote(column.name)}"
            select.append(
                f"case when {b} = {p} or ({b} is null and {p} is null) then 0 else 1 end "
                f"as __ferry_d{i}"
            )
            if values and not column.sensitive:
                select += [
                    f"cast({b} as {self.dialect.text_type}) as __ferry_b{i}",
                    f"cast({p} as {self.dialect.text_type}) as __ferry_p{i}",
                ]
        return (
            f"with base as (\n    {self._side(self.base, key, columns, share)}\n),\n"
            f"pr as (\n    {self._side(self.pr, key, columns, share)}\n),\n"
            f"joined as (\n    select\n        {_list(select, 8)}\n"
            f"    from base as b\n    full outer join pr as p on {on}\n)"
        )

    def multiset(self, columns: list[Compared], share: int | None) -> str:
        """Without a key: rows only on each side, counted as multisets over the compared
        columns (duplicates count), as `EXCEPT ALL` both ways would: one row (removed, added)."""
        names = [c.name for c in columns]
        values = [f"{self._expr(c)} as {quote(c.name)}" for c in columns]
        group = ", ".join(quote(n) for n in names)

        def side(relation: str, flag: str) -> str:
            return (
                f"select {', '.join(values)}, {flag} as __ferry_side from {relation}"
                + self._sample(names, share).replace("\n    ", " ")
            )

        return (
            "with rows_of_both as (\n"
            f"    {side(self.base, '0')}\n    union all\n    {side(self.pr, '1')}\n),\n"
            "per_row as (\n    select\n"
            "        sum(case when __ferry_side = 0 then 1 else 0 end) as n_base,\n"
            "        sum(case when __ferry_side = 1 then 1 else 0 end) as n_pr\n"
            f"    from rows_of_both\n    group by {group}\n)\n"
            "select\n"
            "    coalesce(sum(case when n_base > n_pr then n_base - n_pr else 0 end), 0) "
            "as removed,\n"
            "    coalesce(sum(case when n_pr > n_base then n_pr - n_base else 0 end), 0) as added\n"
            "from per_row"
        )

    def profile(self, columns: list[Compared], numeric: set[str]) -> str:
        """Per column on each side: nulls, distinct values and, for numbers, min, max and mean.

        One row: for each column, base's then the pull request's figures.
        """

        def stats(relation: str) -> str:
            parts = []
            for i, column in enumerate(columns):
                ref = self._expr(column)
                parts += [
                    f"sum(case when {ref} is null then 1 else 0 end) as nulls_{i}",
                    f"count(distinct {ref}) as distinct_{i}",
                ]
                if column.name in numeric and not column.as_text and not column.sensitive:
                    as_float = f"cast({ref} as {self.dialect.float_type})"
                    parts += [
                        f"min({as_float}) as min_{i}",
                        f"max({as_float}) as max_{i}",
                        f"avg({as_float}) as mean_{i}",
                    ]
            parts = parts or ["count(*) as rows_"]
            return f"select\n        {_list(parts, 8)}\n    from {relation}"

        return (
            f"select *\nfrom (\n    {stats(self.base)}\n) as b\n"
            f"cross join (\n    {stats(self.pr)}\n) as p"
        )
