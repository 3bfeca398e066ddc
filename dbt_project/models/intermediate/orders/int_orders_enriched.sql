with

orders as (

    select * from {{ ref('stg_shop__orders') }}

),

order_items as (

    select * from {{ ref('int_order_items_joined') }}

),

payments as (

    select * from {{ ref('int_payments_aggregated_to_orders') }}

),

order_statuses as (

    select * from {{ ref('order_statuses') }}

),

order_totals as (

    select
        order_id,
        count(*) as item_count,
        sum(quantity) as unit_count,
        sum(line_amount) as subtotal,
        max(_loaded_at) as _loaded_at

    from order_items

    group by order_id

),

final as (

    select
        orders.order_id,
        orders.customer_id,
        orders.order_status,
        order_statuses.is_fulfilled,
        orders.ordered_at,
        orders.order_date,
        {{ day_of_week('orders.order_date') }} as order_day_of_week,
        {{ day_of_week('orders.order_date') }} in (6, 7) as is_weekend,
        coalesce(order_totals.item_count, 0) as item_count,
        coalesce(order_totals.unit_count, 0) as unit_count,
        coalesce(order_totals.subtotal, 0) as subtotal,
        orders.shipping_amount,
        coalesce(order_totals.subtotal, 0) + orders.shipping_amount as order_total,
        coalesce(payments.payment_attempts, 0) as payment_attempts,
        coalesce(payments.amount_paid, 0) as amount_paid,
        coalesce(payments.gift_card_amount, 0) as gift_card_amount,
        coalesce(payments.amount_paid, 0)
        >= coalesce(order_totals.subtotal, 0) + orders.shipping_amount as is_paid_in_full,
        -- The newest load that touched the order, its lines or its payments.
        greatest(orders._loaded_at, order_totals._loaded_at, payments._loaded_at) as _loaded_at

    from orders

    left join order_totals
        on orders.order_id = order_totals.order_id

    left join payments
        on orders.order_id = payments.order_id

    left join order_statuses
        on orders.order_status = order_statuses.order_status

)

select * from final
