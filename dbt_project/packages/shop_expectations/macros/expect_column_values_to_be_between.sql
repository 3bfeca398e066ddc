{#-
    Fails for every row whose column is outside [min_value, max_value] (strictly, with
    strictly=true); either bound may be left out, and nulls pass (pair it with not_null).
    row_condition narrows the rows checked. Named and shaped as
    dbt_expectations.expect_column_values_to_be_between.
-#}
{% test expect_column_values_to_be_between(
    model, column_name, min_value=none, max_value=none, row_condition=none, strictly=false
) %}

{%- set below = '<=' if strictly else '<' -%}
{%- set above = '>=' if strictly else '>' -%}

select {{ column_name }} as failing_value
from {{ model }}
where
    (
        false
        {%- if min_value is not none %}
            or {{ column_name }} {{ below }} {{ min_value }}
        {%- endif %}
        {%- if max_value is not none %}
            or {{ column_name }} {{ above }} {{ max_value }}
        {%- endif %}
    )
    {%- if row_condition %}
        and ({{ row_condition }})
    {%- endif %}

{% endtest %}
