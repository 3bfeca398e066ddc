{%- set channels = ['organic', 'paid_search', 'email', 'social', 'direct'] -%}

with

sessions as (

    select * from {{ ref('stg_web__sessions') }}

),

final as (

    select
        customer_id,

        count(*) as session_count,
        sum(pageviews) as pageviews,
        {% for channel in channels -%}
            sum(case when channel = '{{ channel }}' then 1 else 0 end) as {{ channel }}_sessions,
        {% endfor -%}
        min(started_at) as first_session_at,
        max(started_at) as last_session_at

    from sessions

    where customer_id is not null

    group by customer_id

)

select * from final
