{#-
    Keep one row per key from an append-only raw table: the first by `order_by`.
    Adds a `_row_number` column; select the columns you want from the result.
    (Portable on purpose: `qualify` would be shorter but PostgreSQL lacks it.)
-#}
{% macro deduplicate(relation, partition_by, order_by) -%}
    select *
    from (
        select
            *,
            row_number() over (
                partition by {{ partition_by }}
                order by {{ order_by }}
            ) as _row_number
        from {{ relation }}
    ) as ranked
    where _row_number = 1
{%- endmacro %}
