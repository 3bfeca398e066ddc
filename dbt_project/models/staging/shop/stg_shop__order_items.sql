with

source as (

    select * from {{ source('shop', 'order_items') }}

),

latest as (

    {{ deduplicate('source', partition_by='id', order_by='_loaded_at desc') }}

),

final as (

    select
        -- ids
        cast(id as integer) as order_item_id,
        cast(order_id as integer) as order_id,
        cast(product_id as integer) as product_id,

        -- numbers
        cast(quantity as integer) as quantity,
        {{ cents_to_dollars('unit_price_cents') }} as unit_price,

        -- timestamps
        cast(_loaded_at as timestamp) as _loaded_at

    from latest

)

select * from final
