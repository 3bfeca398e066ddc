-- Every order's subtotal equals the sum of its lines in the incremental fact, which
-- proves the incremental loads missed no line and doubled none.
-- Fault injection: --vars '{"fail_tests": true}' makes this test return every order.

with

orders as (

    select * from {{ ref('fct_orders') }}

),

order_items as (

    select * from {{ ref('fct_order_items') }}

),

item_totals as (

    select
        order_id,
        sum(line_amount) as items_amount

    from order_items

    group by order_id

),

final as (

    select
        orders.order_id,
        orders.subtotal,
        item_totals.items_amount

    from orders

    left join item_totals
        on orders.order_id = item_totals.order_id

    where
        abs(orders.subtotal - coalesce(item_totals.items_amount, 0)) > 0.005
        or {{ ferry_inject_test_failure() }}

)

select * from final
