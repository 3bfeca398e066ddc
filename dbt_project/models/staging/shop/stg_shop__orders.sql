with

source as (

    select * from {{ source('shop', 'orders') }}

),

-- A status change arrives as a new row: keep the newest version of each order.
latest as (

    {{ deduplicate('source', partition_by='id', order_by='_loaded_at desc') }}

),

final as (

    select
        -- ids
        cast(id as integer) as order_id,
        cast(customer_id as integer) as customer_id,

        -- attributes
        lower(status) as order_status,
        {{ cents_to_dollars('shipping_cents') }} as shipping_amount,

        -- timestamps
        cast(ordered_at as timestamp) as ordered_at,
        cast(ordered_at as date) as order_date,
        cast(updated_at as timestamp) as updated_at,
        cast(_loaded_at as timestamp) as _loaded_at

    from latest

)

select * from final
