"""Generate the shop's raw tables and load them straight into the warehouse.

The data is deterministic for a given --seed, --scale and --as-of day, so tests can assert on
it; --as-of defaults to today (UTC) so that `dbt source freshness` passes on fresh data.
Raw tables are append-only, like a real loader's: a changed order arrives as a new row with
a later `_loaded_at`, and the staging models keep the latest version of each id.

Usage (from dbt_project/):
    python scripts/generate_raw_data.py --target duckdb --duckdb-path target/shop.duckdb
    python scripts/generate_raw_data.py --target postgres --scale 10
    python scripts/generate_raw_data.py --duckdb-path target/shop.duckdb --late-batch
    python scripts/generate_raw_data.py --duckdb-path target/shop.duckdb --append payments

A full run replaces every raw table. --late-batch instead appends one more load, an hour after
the newest one: new orders dated five days back, and new versions of existing orders (now
returned) and of one customer, which the incremental fact must pick up without duplicates.
--append TABLE appends --rows new ids to that one table, an hour after its own newest load, so
that `dbt source freshness` sees that source alone as fresher.
Tests import this file and call `run(argv)` (returns a summary) or `main(argv)` (exit code).
"""

import argparse
import bisect
import csv
import datetime as dt
import io
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Table name -> column definitions. The types are valid in DuckDB and PostgreSQL.
TABLES: dict[str, str] = {
    "customers": "id integer, first_name varchar, last_name varchar, email varchar, "
    "country_code varchar, created_at timestamp, updated_at timestamp, _loaded_at timestamp",
    "products": "id integer, sku varchar, name varchar, category varchar, price_cents integer, "
    "is_active boolean, created_at timestamp, updated_at timestamp, _loaded_at timestamp",
    "orders": "id integer, customer_id integer, status varchar, ordered_at timestamp, "
    "shipping_cents integer, updated_at timestamp, _loaded_at timestamp",
    "order_items": "id integer, order_id integer, product_id integer, quantity integer, "
    "unit_price_cents integer, _loaded_at timestamp",
    "payments": "id integer, order_id integer, payment_method varchar, status varchar, "
    "amount_cents integer, created_at timestamp, _loaded_at timestamp",
    "sessions": "id integer, customer_id integer, channel varchar, started_at timestamp, "
    "ended_at timestamp, pageviews integer, _loaded_at timestamp",
}

# Must stay within seeds/country_codes.csv (a relationships test checks it).
COUNTRIES = ["US", "GB", "DE", "FR", "NL", "CA", "AU", "ES", "IT", "SE", "IE", "BE", "AT", "CH"]
COUNTRY_WEIGHTS = [30, 12, 12, 8, 6, 6, 5, 4, 4, 3, 3, 3, 2, 2]
FIRST_NAMES = ["Ada", "Ben", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lea"]
LAST_NAMES = ["Abbott", "Baker", "Chen", "Diaz", "Evans", "Fischer", "Garcia", "Hughes", "Ito"]
CATEGORIES = ["coffee", "tea", "brewing", "mugs", "snacks", "gifts"]
ADJECTIVES = ["Bold", "Bright", "Classic", "Dark", "Golden", "Mellow", "Smoky", "Wild"]
NOUNS = ["Roast", "Blend", "Kettle", "Press", "Mug", "Tin", "Box", "Grinder", "Cup", "Bar"]
METHODS = ["credit_card", "paypal", "bank_transfer"]
METHOD_WEIGHTS = [70, 20, 10]
CHANNELS = ["organic", "paid_search", "email", "social", "direct"]
CHANNEL_WEIGHTS = [35, 25, 15, 15, 10]

ORDERS_PER_SCALE = 5_000
CUSTOMERS_PER_SCALE = 1_000
SESSIONS_PER_ORDER = 3
HISTORY_DAYS = 365
# Every order whose id is a multiple of this is completed but one dollar short of its total:
# the warn-severity test assert_orders_are_paid_in_full always finds these.
UNDERPAID_EVERY = 997
LATE_SHARE = 0.02  # share of orders that reach the warehouse days after they were placed
LATE_BATCH_ORDERS = 5
LATE_BATCH_RETURNS = 3
LATE_BATCH_DAYS_BACK = 5
APPEND_ROWS = 20

Row = tuple[Any, ...]
Delta = dt.timedelta


@dataclass
class LoadSummary:
    """What one run wrote, so that tests can assert on it without re-deriving the data."""

    target: str
    raw_schema: str
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    # Filled by --late-batch only.
    late_loaded_at: dt.datetime | None = None
    late_order_ids: list[int] = field(default_factory=list)
    late_order_item_ids: list[int] = field(default_factory=list)
    updated_order_ids: list[int] = field(default_factory=list)
    updated_customer_ids: list[int] = field(default_factory=list)
    # Filled by --append only.
    appended_table: str | None = None
    appended_ids: list[int] = field(default_factory=list)
    appended_loaded_at: dt.datetime | None = None


# --------------------------------------------------------------------------- generation

MINUTE, HOUR, DAY = dt.timedelta(minutes=1), dt.timedelta(hours=1), dt.timedelta(days=1)
ZERO = dt.timedelta(0)


def _delay(rng: random.Random, low: Delta, high: Delta) -> Delta:
    return dt.timedelta(seconds=rng.randint(int(low.total_seconds()), int(high.total_seconds())))


def _at(base: dt.datetime, rng: random.Random, low: Delta, high: Delta) -> dt.datetime:
    return base + _delay(rng, low, high)


def _customers(rng: random.Random, n: int, end: dt.datetime) -> list[Row]:
    """Customers in sign-up order, so "who existed then" is a bisect on created_at."""
    created = sorted(_at(end - 2 * HISTORY_DAYS * DAY, rng, ZERO, 700 * DAY) for _ in range(n))
    rows: list[Row] = []
    for i, created_at in enumerate(created, start=1):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        updated_at = created_at
        if rng.random() < 0.2:
            updated_at = min(_at(created_at, rng, DAY, 300 * DAY), end)
        loaded_at = min(_at(updated_at, rng, 5 * MINUTE, 2 * HOUR), end)
        email = f"{first}.{last}{i}@example.com"
        if rng.random() < 0.05:
            email = email.upper()  # staging lower-cases these
        country = rng.choices(COUNTRIES, COUNTRY_WEIGHTS)[0]
        rows.append((i, first, last, email, country, created_at, updated_at, loaded_at))
    return rows


def _products(rng: random.Random, n: int, end: dt.datetime) -> list[Row]:
    rows: list[Row] = []
    for i in range(1, n + 1):
        name = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {i}"
        price = rng.randrange(500, 20_000, 50)
        created_at = _at(end - 800 * DAY, rng, ZERO, 300 * DAY)
        updated_at = _at(created_at, rng, ZERO, 400 * DAY)
        active = rng.random() > 0.05
        category = CATEGORIES[(i - 1) % len(CATEGORIES)]
        # The catalogue is re-exported in full with every load, hence _loaded_at = end.
        rows.append((i, f"SKU-{i:05d}", name, category, price, active, created_at, updated_at, end))
    return rows


def _status(rng: random.Random, age: dt.timedelta) -> str:
    if age > 10 * DAY:
        return rng.choices(["completed", "returned", "cancelled"], [93, 4, 3])[0]
    if age > 3 * DAY:
        return rng.choices(["shipped", "completed", "cancelled"], [60, 37, 3])[0]
    return rng.choices(["placed", "shipped"], [70, 30])[0]


def _orders(
    rng: random.Random, n: int, signups: list[dt.datetime], prices: list[int], end: dt.datetime
) -> tuple[list[Row], list[Row], list[Row]]:
    """Orders (ids in time order) with their lines and payment attempts."""
    start = end - HISTORY_DAYS * DAY
    ordered = sorted(_at(start, rng, ZERO, HISTORY_DAYS * DAY - HOUR) for _ in range(n))
    orders: list[Row] = []
    items: list[Row] = []
    payments: list[Row] = []
    for order_id, ordered_at in enumerate(ordered, start=1):
        customer_id = rng.randrange(bisect.bisect_left(signups, ordered_at)) + 1
        age = end - ordered_at
        underpaid = order_id % UNDERPAID_EVERY == 0
        status = "completed" if underpaid else _status(rng, age)
        if rng.random() < LATE_SHARE:
            loaded_at = min(_at(ordered_at, rng, 2 * DAY, 10 * DAY), end)
        else:
            loaded_at = min(_at(ordered_at, rng, 5 * MINUTE, 3 * HOUR), end)

        subtotal = 0
        for product_id in rng.sample(range(1, len(prices) + 1), rng.choice([1, 1, 1, 2, 2, 3, 4])):
            quantity = rng.choices([1, 2, 3], [75, 20, 5])[0]
            price = prices[product_id - 1]
            if rng.random() < 0.1:
                price = price * 9 // 10  # a discount
            subtotal += quantity * price
            items.append((len(items) + 1, order_id, product_id, quantity, price, loaded_at))
        shipping = 0 if subtotal >= 5_000 else 499
        total = subtotal + shipping

        # A recent order that moved on from "placed" arrives twice: placed, then its status.
        versions = [(status, ordered_at, loaded_at)]
        if status != "placed" and age <= 10 * DAY and not underpaid:
            updated_at = min(_at(ordered_at, rng, DAY, 3 * DAY), end)
            reloaded_at = min(_at(updated_at, rng, 5 * MINUTE, HOUR), end)
            if reloaded_at > loaded_at:
                versions = [("placed", ordered_at, loaded_at), (status, updated_at, reloaded_at)]
        for version, updated_at, version_loaded_at in versions:
            orders.append(
                (
                    order_id,
                    customer_id,
                    version,
                    ordered_at,
                    shipping,
                    updated_at,
                    version_loaded_at,
                )
            )

        paid_at = _at(ordered_at, rng, dt.timedelta(seconds=1), 10 * MINUTE)
        attempts: list[tuple[str, str, int]] = []
        if status == "cancelled" or rng.random() < 0.08:
            attempts.append(("credit_card", "failed", total))
        if status != "cancelled":
            due = total - 100 if underpaid else total
            if rng.random() < 0.1 and due > 1_000:
                attempts.append(("gift_card", "success", min(2_500, due // 2)))
                due -= min(2_500, due // 2)
            attempts.append((rng.choices(METHODS, METHOD_WEIGHTS)[0], "success", due))
        for method, outcome, amount in attempts:
            payments.append(
                (len(payments) + 1, order_id, method, outcome, amount, paid_at, loaded_at)
            )
    return orders, items, payments


def _sessions(
    rng: random.Random, n: int, signups: list[dt.datetime], end: dt.datetime
) -> list[Row]:
    """Web sessions; about a third are anonymous (no customer_id)."""
    start = end - HISTORY_DAYS * DAY
    rows: list[Row] = []
    for session_id in range(1, n + 1):
        started_at = _at(start, rng, ZERO, HISTORY_DAYS * DAY - HOUR)
        known = bisect.bisect_left(signups, started_at)
        visitor = rng.randrange(known) + 1 if known and rng.random() < 0.66 else None
        ended_at = started_at + dt.timedelta(seconds=rng.randint(10, 2_400))
        loaded_at = min(_at(started_at, rng, HOUR, 6 * HOUR), end)
        channel = rng.choices(CHANNELS, CHANNEL_WEIGHTS)[0]
        pageviews = rng.randint(1, 20)
        rows.append((session_id, visitor, channel, started_at, ended_at, pageviews, loaded_at))
    return rows


def _generate(scale: int, seed: int, end: dt.datetime) -> dict[str, list[Row]]:
    """Build every raw table in memory. Pure: same arguments, same rows; the shape of the
    data relative to `end` does not depend on `end` itself."""
    rng = random.Random(seed)
    customers = _customers(rng, CUSTOMERS_PER_SCALE * scale, end)
    signups = [row[5] for row in customers]  # created_at, ascending
    products = _products(rng, int(120 * scale**0.5), end)  # the catalogue grows slowly
    prices = [row[4] for row in products]
    orders, items, payments = _orders(rng, ORDERS_PER_SCALE * scale, signups, prices, end)
    sessions = _sessions(rng, SESSIONS_PER_ORDER * ORDERS_PER_SCALE * scale, signups, end)
    return {
        "customers": customers,
        "products": products,
        "orders": orders,
        "order_items": items,
        "payments": payments,
        "sessions": sessions,
    }


# --------------------------------------------------------------------------- warehouses


def _cell(value: object) -> object:
    """CSV that DuckDB and PostgreSQL read alike: empty is NULL, booleans are words."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _csv(rows: Iterable[Row]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows([_cell(v) for v in row] for row in rows)
    return buffer.getvalue()


class _Warehouse:
    """The few statements the generator needs, on DuckDB or PostgreSQL."""

    def __init__(self, target: str, duckdb_path: str | None) -> None:
        self.target = target
        self.conn: Any  # a DuckDB or a psycopg2 connection
        if target == "duckdb":
            import duckdb

            assert duckdb_path
            Path(duckdb_path).parent.mkdir(parents=True, exist_ok=True)
            self.conn = duckdb.connect(duckdb_path)
            self.conn.execute("begin")  # a reader sees the old tables or the new, never half
            self._tmp = tempfile.TemporaryDirectory(prefix="shop_raw_")
        else:
            import psycopg2

            self.conn = psycopg2.connect(
                host=os.environ.get("FERRY_PG_HOST", "127.0.0.1"),
                port=int(os.environ.get("FERRY_PG_PORT", "5432")),
                user=os.environ.get("FERRY_PG_USER", "postgres"),
                password=os.environ.get("FERRY_PG_PASSWORD", ""),
                dbname=os.environ.get("FERRY_PG_DATABASE", "test"),
            )
            self.cursor = self.conn.cursor()

    def execute(self, sql: str) -> None:
        if self.target == "duckdb":
            self.conn.execute(sql)
        else:
            self.cursor.execute(sql)

    def all(self, sql: str) -> list[tuple[Any, ...]]:
        if self.target == "duckdb":
            return self.conn.execute(sql).fetchall()
        self.cursor.execute(sql)
        return self.cursor.fetchall()

    def one(self, sql: str) -> tuple[Any, ...]:
        return self.all(sql)[0]

    def copy(self, table: str, rows: Sequence[Row]) -> None:
        """Append rows fast: DuckDB reads a CSV file, PostgreSQL takes COPY FROM STDIN."""
        definitions = TABLES[table.split(".")[-1]].split(",")
        columns = ", ".join(definition.split()[0] for definition in definitions)
        if self.target == "duckdb":
            path = Path(self._tmp.name) / f"{table}.csv"
            path.write_text(_csv(rows))
            self.conn.execute(
                f"copy {table} ({columns}) from '{path.as_posix()}' (format csv, header false)"
            )
        else:
            self.cursor.copy_expert(
                f"copy {table} ({columns}) from stdin with (format csv)", io.StringIO(_csv(rows))
            )

    def commit(self) -> None:
        if self.target == "duckdb":
            self.conn.execute("commit")
        else:
            self.conn.commit()

    def close(self) -> None:
        self.conn.close()
        if self.target == "duckdb":
            self._tmp.cleanup()


def _replace_all(wh: _Warehouse, schema: str, tables: dict[str, list[Row]]) -> None:
    """Empty and refill each table. A table is only dropped when its columns changed:
    PostgreSQL would refuse (or, with cascade, drop) the staging views built on it."""
    wh.execute(f"create schema if not exists {schema}")
    for table, rows in tables.items():
        wanted = [definition.split()[0] for definition in TABLES[table].split(",")]
        existing = wh.all(
            "select column_name from information_schema.columns"
            f" where table_schema = '{schema}' and table_name = '{table}'"
            " order by ordinal_position"
        )
        if [name for (name,) in existing] == wanted:
            wh.execute(f"delete from {schema}.{table}")
        else:
            cascade = " cascade" if wh.target == "postgres" else ""
            wh.execute(f"drop table if exists {schema}.{table}{cascade}")
            wh.execute(f"create table {schema}.{table} ({TABLES[table]})")
        wh.copy(f"{schema}.{table}", rows)


def _late_batch(wh: _Warehouse, schema: str, seed: int, summary: LoadSummary) -> None:
    """Append one more load: late orders for a day already loaded, and changed rows."""
    (loaded,) = wh.one(
        "select count(*) from information_schema.tables"
        f" where table_schema = '{schema}' and table_name = 'orders'"
    )
    if not loaded:
        raise SystemExit(f"no raw tables in {schema}: run a full load before --late-batch")
    max_order, max_item, max_payment, newest = wh.one(
        f"select (select max(id) from {schema}.orders), (select max(id) from {schema}.order_items),"
        f" (select max(id) from {schema}.payments), (select max(_loaded_at) from {schema}.orders)"
    )
    if max_order is None:
        raise SystemExit(f"no raw orders in {schema}: run a full load before --late-batch")
    loaded_at = newest.replace(microsecond=0) + dt.timedelta(hours=1)
    late_day = dt.datetime.combine(loaded_at.date(), dt.time()) - dt.timedelta(
        days=LATE_BATCH_DAYS_BACK
    )
    rng = random.Random(f"{seed}-late-{max_order}")
    n_products, n_customers = wh.one(
        f"select (select max(id) from {schema}.products), (select max(id) from {schema}.customers)"
    )

    orders: list[Row] = []
    items: list[Row] = []
    payments: list[Row] = []
    for k in range(1, LATE_BATCH_ORDERS + 1):
        order_id = max_order + k
        ordered_at = late_day + dt.timedelta(hours=rng.randint(8, 20), minutes=rng.randint(0, 59))
        customer_id = rng.randint(1, n_customers // 2)  # long-standing customers
        subtotal = 0
        for product_id in rng.sample(range(1, n_products + 1), 2):
            max_item += 1
            price = rng.randrange(500, 20_000, 50)
            subtotal += price
            items.append((max_item, order_id, product_id, 1, price, loaded_at))
            summary.late_order_item_ids.append(max_item)
        shipping = 0 if subtotal >= 5_000 else 499
        orders.append(
            (order_id, customer_id, "shipped", ordered_at, shipping, ordered_at, loaded_at)
        )
        max_payment += 1
        paid_at = ordered_at + dt.timedelta(minutes=2)
        total = subtotal + shipping
        payments.append((max_payment, order_id, "paypal", "success", total, paid_at, loaded_at))
        summary.late_order_ids.append(order_id)

    # Returns for orders placed on the late day (never the deliberately underpaid ones).
    candidates = wh.all(
        f"select id, customer_id, ordered_at, shipping_cents from {schema}.orders as o"
        f" where cast(ordered_at as date) = date '{late_day.date().isoformat()}'"
        f" and status = 'completed' and id % {UNDERPAID_EVERY} <> 0"
        f" and not exists (select 1 from {schema}.orders as r"
        f" where r.id = o.id and r.status = 'returned')"
        f" order by id limit {LATE_BATCH_RETURNS}"
    )
    changed_at = loaded_at - dt.timedelta(minutes=30)
    for order_id, customer_id, ordered_at, shipping in candidates:
        row = (order_id, customer_id, "returned", ordered_at, shipping, changed_at, loaded_at)
        orders.append(row)
        summary.updated_order_ids.append(order_id)

    # One customer changes their email (the snapshot records the new version).
    if candidates:
        customer_id = candidates[0][1]
        cid, first, last, email, country, created_at = wh.one(
            f"select id, first_name, last_name, email, country_code, created_at"
            f" from {schema}.customers where id = {customer_id}"
            f" order by _loaded_at desc limit 1"
        )
        moved = f"moved.{str(email).lower()}"
        customers = [(cid, first, last, moved, country, created_at, changed_at, loaded_at)]
        wh.copy(f"{schema}.customers", customers)
        summary.updated_customer_ids.append(cid)
        summary.rows["customers"] = len(customers)

    wh.copy(f"{schema}.orders", orders)
    wh.copy(f"{schema}.order_items", items)
    wh.copy(f"{schema}.payments", payments)
    summary.rows.update(orders=len(orders), order_items=len(items), payments=len(payments))
    summary.late_loaded_at = loaded_at


def _append(
    wh: _Warehouse, schema: str, table: str, rows: int, seed: int, summary: LoadSummary
) -> None:
    """Append `rows` new ids to one raw table only, loaded an hour after its newest load.

    The rows refer to existing rows only (customers, products, orders), so every other raw
    table, and the freshness of every other source, stays as it was.
    """
    (loaded,) = wh.one(
        "select count(*) from information_schema.tables"
        f" where table_schema = '{schema}' and table_name = '{table}'"
    )
    if not loaded:
        raise SystemExit(f"no raw {table} in {schema}: run a full load before --append")
    max_id, newest = wh.one(f"select max(id), max(_loaded_at) from {schema}.{table}")
    if max_id is None:
        raise SystemExit(f"no raw {table} in {schema}: run a full load before --append")
    loaded_at = newest.replace(microsecond=0) + HOUR
    # Seeded by the table's state too: a second append of the same table gets new values.
    rng = random.Random(f"{seed}-append-{table}-{max_id}-{loaded_at.isoformat()}")
    ids = list(range(max_id + 1, max_id + rows + 1))

    def before_load(low: Delta, high: Delta) -> dt.datetime:
        return loaded_at - _delay(rng, low, high)

    new: list[Row] = []
    if table == "customers":
        for i in ids:
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            created_at = before_load(5 * MINUTE, 2 * HOUR)
            country = rng.choices(COUNTRIES, COUNTRY_WEIGHTS)[0]
            email = f"{first}.{last}{i}@example.com"
            new.append((i, first, last, email, country, created_at, created_at, loaded_at))
    elif table == "products":
        for i in ids:
            name = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {i}"
            category = CATEGORIES[(i - 1) % len(CATEGORIES)]
            created_at = before_load(HOUR, DAY)
            price = rng.randrange(500, 20_000, 50)
            new.append(
                (i, f"SKU-{i:05d}", name, category, price, True, created_at, created_at, loaded_at)
            )
    elif table == "orders":
        # Placed within the hour before the load, by customers who had signed up by then.
        customers = [
            cid
            for (cid,) in wh.all(
                f"select distinct id from {schema}.customers"
                f" where created_at < timestamp '{(loaded_at - HOUR).isoformat(' ')}'"
                " order by id"
            )
        ]
        for i in ids:
            ordered_at = before_load(5 * MINUTE, HOUR)
            customer_id = rng.choice(customers)
            new.append((i, customer_id, "placed", ordered_at, 499, ordered_at, loaded_at))
    elif table == "order_items":
        # Orders without lines first (those of an earlier `--append orders`), then any order.
        lineless = [
            oid
            for (oid,) in wh.all(
                f"select distinct o.id from {schema}.orders as o where not exists"
                f" (select 1 from {schema}.order_items as i where i.order_id = o.id) order by o.id"
            )
        ]
        (max_order,) = wh.one(f"select max(id) from {schema}.orders")
        prices = dict(
            wh.all(
                f"select id, price_cents from {schema}.products as p where _loaded_at ="
                f" (select max(_loaded_at) from {schema}.products as q where q.id = p.id)"
                " order by id"
            )
        )
        products = sorted(prices)
        for k, i in enumerate(ids):
            order_id = lineless[k] if k < len(lineless) else rng.randint(1, max_order)
            product_id = rng.choice(products)
            quantity = rng.choices([1, 2, 3], [75, 20, 5])[0]
            new.append((i, order_id, product_id, quantity, prices[product_id], loaded_at))
    elif table == "payments":
        # Declined retries on existing orders: attempts that move no money, so every order
        # stays as paid as it was.
        (max_order,) = wh.one(f"select max(id) from {schema}.orders")
        for i in ids:
            order_id = rng.randint(1, max_order)
            method = rng.choices(METHODS, METHOD_WEIGHTS)[0]
            amount = rng.randrange(500, 20_000, 50)
            created_at = before_load(5 * MINUTE, HOUR)
            new.append((i, order_id, method, "failed", amount, created_at, loaded_at))
    else:  # sessions
        (max_customer,) = wh.one(f"select max(id) from {schema}.customers")
        for i in ids:
            started_at = before_load(HOUR, 6 * HOUR)
            visitor = rng.randint(1, max_customer) if rng.random() < 0.66 else None
            ended_at = started_at + dt.timedelta(seconds=rng.randint(10, 2_400))
            channel = rng.choices(CHANNELS, CHANNEL_WEIGHTS)[0]
            new.append((i, visitor, channel, started_at, ended_at, rng.randint(1, 20), loaded_at))
    wh.copy(f"{schema}.{table}", new)
    summary.rows[table] = len(new)
    summary.appended_table = table
    summary.appended_ids = ids
    summary.appended_loaded_at = loaded_at


# --------------------------------------------------------------------------- command line


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="generate_raw_data.py",
        description="Load deterministic raw shop data into DuckDB or PostgreSQL.",
    )
    parser.add_argument("--target", choices=["duckdb", "postgres"], default="duckdb")
    parser.add_argument(
        "--duckdb-path",
        default=os.environ.get("FERRY_DUCKDB_PATH", "target/shop.duckdb"),
        help="DuckDB file (default: $FERRY_DUCKDB_PATH or target/shop.duckdb)",
    )
    parser.add_argument(
        "--scale",
        type=int,
        choices=[1, 10, 100],
        default=1,
        help="1 = 5,000 orders; 10 and 100 multiply every table but products",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--as-of",
        type=dt.date.fromisoformat,
        default=None,
        help="the load day, YYYY-MM-DD (default: today, UTC); rows are loaded up to its midnight",
    )
    parser.add_argument(
        "--raw-schema",
        default=None,
        help="default: <dbt schema>_raw, i.e. main_raw on DuckDB and"
        " ${FERRY_PG_SCHEMA:-shop}_raw on PostgreSQL (dbt var raw_schema)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--late-batch",
        action="store_true",
        help="append one late load to existing raw tables instead of replacing",
    )
    mode.add_argument(
        "--append",
        choices=list(TABLES),
        default=None,
        metavar="TABLE",
        help="append --rows new rows to this one raw table, loaded an hour after its newest"
        f" row, so that only its source is fresher ({', '.join(TABLES)})",
    )
    parser.add_argument(
        "--rows",
        type=_positive,
        default=APPEND_ROWS,
        help=f"how many rows --append writes (default {APPEND_ROWS})",
    )
    return parser.parse_args(argv)


def run(argv: Sequence[str] | None = None) -> LoadSummary:
    """Parse arguments, write the raw tables, and say what was written."""
    args = _parse(argv)
    started = time.perf_counter()
    if args.raw_schema:
        schema = args.raw_schema
    elif args.target == "duckdb":
        schema = "main_raw"
    else:
        schema = f"{os.environ.get('FERRY_PG_SCHEMA', 'shop')}_raw"
    summary = LoadSummary(target=args.target, raw_schema=schema)

    wh = _Warehouse(args.target, args.duckdb_path)
    try:
        if args.late_batch:
            _late_batch(wh, schema, args.seed, summary)
        elif args.append:
            _append(wh, schema, args.append, args.rows, args.seed, summary)
        else:
            day = args.as_of or dt.datetime.now(dt.UTC).date()
            tables = _generate(args.scale, args.seed, dt.datetime.combine(day, dt.time()))
            _replace_all(wh, schema, tables)
            summary.rows = {table: len(rows) for table, rows in tables.items()}
        wh.commit()
    finally:
        wh.close()
    summary.seconds = time.perf_counter() - started
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    summary = run(argv)
    counts = ", ".join(f"{table}={n}" for table, n in summary.rows.items())
    print(f"{summary.target}: {summary.raw_schema}: {counts} in {summary.seconds:.2f}s")
    if summary.late_loaded_at:
        print(
            f"late batch loaded at {summary.late_loaded_at}: new orders "
            f"{summary.late_order_ids}, returned orders {summary.updated_order_ids}, "
            f"changed customers {summary.updated_customer_ids}"
        )
    if summary.appended_loaded_at:
        ids = summary.appended_ids
        print(
            f"appended {len(ids)} {summary.appended_table} (ids {ids[0]}..{ids[-1]})"
            f" loaded at {summary.appended_loaded_at}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
