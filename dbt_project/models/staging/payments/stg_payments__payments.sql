with

source as (

    select * from {{ source('payments', 'payments') }}

),

latest as (

    {{ deduplicate('source', partition_by='id', order_by='_loaded_at desc') }}

),

final as (

    select
        -- ids
        cast(id as integer) as payment_id,
        cast(order_id as integer) as order_id,

        -- attributes
        lower(payment_method) as payment_method,
        lower(status) as payment_status,
        lower(status) = 'success' as is_successful,
        {{ cents_to_dollars('amount_cents') }} as amount,

        -- timestamps
        cast(created_at as timestamp) as created_at,
        cast(_loaded_at as timestamp) as _loaded_at

    from latest

)

select * from final
