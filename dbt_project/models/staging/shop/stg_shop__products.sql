with

source as (

    select * from {{ source('shop', 'products') }}

),

latest as (

    {{ deduplicate('source', partition_by='id', order_by='_loaded_at desc') }}

),

final as (

    select
        -- ids
        cast(id as integer) as product_id,
        sku,

        -- attributes
        name as product_name,
        lower(category) as category,
        {{ cents_to_dollars('price_cents') }} as price,
        is_active,

        -- timestamps
        cast(created_at as timestamp) as created_at,
        cast(updated_at as timestamp) as updated_at,
        cast(_loaded_at as timestamp) as _loaded_at

    from latest

)

select * from final
