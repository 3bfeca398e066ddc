{#-
    Fault injection, so that demos and ferry's own tests can show a failed run on purpose.
    Without the vars below, every macro here renders to nothing.

    --vars '{"fail_models": ["int_orders_enriched"]}'
        Each model named here fails with a real database error (its pre-hook selects from a
        relation that does not exist), so everything downstream of it is skipped.
        A comma-separated string works too: --vars 'fail_models: int_orders_enriched,dim_products'
    --vars '{"slow_models": ["dim_customers"], "slow_seconds": 12}'
        Each model named here takes slow_seconds longer (default 15) before it runs: its
        pre-hook waits, so dbt times the wait as the model's own. A comma-separated string
        works too. For showing timing-regression alerts.
    --vars '{"fail_tests": true}'
        The singular test assert_order_subtotals_match_items returns every order and fails.
-#}

{% macro ferry_inject_model_failure() -%}
    {%- set requested = var('fail_models', []) or [] -%}
    {%- if requested is string -%}
        {%- set requested = requested.split(',') | map('trim') | list -%}
    {%- endif -%}
    {%- if execute and model.name in requested -%}
        select * from {{ target.schema }}.ferry_injected_failure__{{ model.name }}
    {%- endif -%}
{%- endmacro %}

{% macro ferry_inject_model_slowness() -%}
    {%- set requested = var('slow_models', []) or [] -%}
    {%- if requested is string -%}
        {%- set requested = requested.split(',') | map('trim') | list -%}
    {%- endif -%}
    {%- if execute and model.name in requested -%}
        {%- set clock = modules.datetime.datetime -%}
        {%- set seconds = var('slow_seconds', 15) | float -%}
        {%- set until = clock.now() + modules.datetime.timedelta(seconds=seconds) -%}
        {#- Jinja cannot sleep and its ranges are capped: wait in slices until the time. -#}
        {%- set waiting = namespace(on=true) -%}
        {%- for _ in range(100000) if waiting.on -%}
            {%- for _ in range(10000) if waiting.on -%}
                {%- if clock.now() >= until -%}
                    {%- set waiting.on = false -%}
                {%- endif -%}
            {%- endfor -%}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}

{#- A boolean SQL literal: `true` only when var('fail_tests') is set. Use as `or {{ ... }}`. -#}
{% macro ferry_inject_test_failure() -%}
    {%- if var('fail_tests', false) | string | lower in ['true', '1', 'yes'] -%}
        true
    {%- else -%}
        false
    {%- endif -%}
{%- endmacro %}
