-- The contract in _core__models.yml fixes every column's type, so each one is cast here.
with

orders as (

    select * from {{ ref('int_orders_enriched') }}

),

final as (

    select
        cast(order_id as integer) as order_id,
        cast(customer_id as integer) as customer_id,
        cast(order_status as varchar) as order_status,
        cast(is_fulfilled as boolean) as is_fulfilled,
        cast(ordered_at as timestamp) as ordered_at,
        cast(order_date as date) as order_date,
        cast(order_day_of_week as integer) as order_day_of_week,
        cast(is_weekend as boolean) as is_weekend,
        cast(item_count as integer) as item_count,
        cast(unit_count as integer) as unit_count,
        cast(subtotal as numeric(16, 2)) as subtotal,
        cast(shipping_amount as numeric(16, 2)) as shipping_amount,
        cast(order_total as numeric(16, 2)) as order_total,
        cast(amount_paid as numeric(16, 2)) as amount_paid,
        cast(gift_card_amount as numeric(16, 2)) as gift_card_amount,
        cast(is_paid_in_full as boolean) as is_paid_in_full,
        cast(_loaded_at as timestamp) as _loaded_at

    from orders

)

select * from final
