{{ config(severity='warn') }}

-- Orders that were not cancelled yet were paid less than their total. The raw data
-- generator always underpays a few (every order id divisible by 997), so this test warns
-- on every build: it is how ferry shows "passed with warnings".

with

orders as (

    select * from {{ ref('fct_orders') }}

),

final as (

    select
        order_id,
        order_status,
        order_total,
        amount_paid

    from orders

    where
        order_status <> 'cancelled'
        and amount_paid < order_total

)

select * from final
