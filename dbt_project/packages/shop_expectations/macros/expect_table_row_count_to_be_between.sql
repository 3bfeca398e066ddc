{#-
    Fails when the model's row count is outside [min_value, max_value]; either bound may be
    left out. The failing row carries the count, so dbt's message says how far off it was.
    Named and shaped as dbt_expectations.expect_table_row_count_to_be_between.
-#}
{% test expect_table_row_count_to_be_between(model, min_value=none, max_value=none) %}

with row_count as (
    select count(*) as row_count
    from {{ model }}
)

select row_count
from row_count
where
    false
    {%- if min_value is not none %}
        or row_count < {{ min_value }}
    {%- endif %}
    {%- if max_value is not none %}
        or row_count > {{ max_value }}
    {%- endif %}

{% endtest %}
