with

source as (

    select * from {{ source('web', 'sessions') }}

),

latest as (

    {{ deduplicate('source', partition_by='id', order_by='_loaded_at desc') }}

),

final as (

    select
        -- ids
        cast(id as integer) as session_id,
        cast(customer_id as integer) as customer_id,

        -- attributes
        lower(channel) as channel,
        cast(pageviews as integer) as pageviews,
        {{ dbt.datediff('started_at', 'ended_at', 'second') }} as duration_seconds,

        -- timestamps
        cast(started_at as timestamp) as started_at,
        cast(ended_at as timestamp) as ended_at,
        cast(started_at as date) as session_date,
        cast(_loaded_at as timestamp) as _loaded_at

    from latest

)

select * from final
