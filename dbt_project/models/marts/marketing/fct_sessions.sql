with

sessions as (

    select * from {{ ref('stg_web__sessions') }}

),

customers as (

    select * from {{ ref('stg_shop__customers') }}

),

final as (

    select
        sessions.session_id,
        sessions.customer_id,
        sessions.customer_id is not null as is_identified,
        customers.country_code,
        sessions.channel,
        sessions.session_date,
        sessions.started_at,
        sessions.duration_seconds,
        sessions.pageviews,
        case
            when sessions.customer_id is not null
                then row_number() over (
                    partition by sessions.customer_id
                    order by sessions.started_at, sessions.session_id
                )
        end as customer_session_number

    from sessions

    left join customers
        on sessions.customer_id = customers.customer_id

)

select * from final
