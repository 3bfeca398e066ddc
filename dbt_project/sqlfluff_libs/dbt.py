"""Stand-ins for dbt's cross-database macros, so sqlfluff's jinja templater can render models.

sqlfluff only lints the rendered SQL; these return plausible DuckDB so that it parses.
"""


def concat(fields):
    return "concat(" + ", ".join(fields) + ")"


def datediff(first_date, second_date, datepart):
    return f"date_diff('{datepart}', {first_date}, {second_date})"


def dateadd(datepart, interval, from_date_or_timestamp):
    return f"date_add({from_date_or_timestamp}, interval ({interval}) {datepart})"


def date_trunc(datepart, date):
    return f"date_trunc('{datepart}', {date})"
