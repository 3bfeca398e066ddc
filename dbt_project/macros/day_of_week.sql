{#-
    ISO day of week, Monday = 1 ... Sunday = 7, as an integer.
    Each warehouse spells this differently, so it is dispatched (dbt picks
    <adapter>__day_of_week, then default__day_of_week).
-#}
{% macro day_of_week(date_expression) -%}
    {{ return(adapter.dispatch('day_of_week')(date_expression)) }}
{%- endmacro %}

{% macro default__day_of_week(date_expression) -%}
    cast(extract(isodow from {{ date_expression }}) as integer)
{%- endmacro %}

{% macro duckdb__day_of_week(date_expression) -%}
    cast(isodow({{ date_expression }}) as integer)
{%- endmacro %}

{% macro postgres__day_of_week(date_expression) -%}
    cast(extract(isodow from {{ date_expression }}) as integer)
{%- endmacro %}

{#- Redshift has no isodow: its dow counts Sunday as 0. -#}
{% macro redshift__day_of_week(date_expression) -%}
    cast(case
        when date_part(dow, {{ date_expression }}) = 0 then 7
        else date_part(dow, {{ date_expression }})
    end as integer)
{%- endmacro %}
