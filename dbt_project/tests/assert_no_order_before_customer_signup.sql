-- A customer cannot order before their account exists.

with

orders as (

    select * from {{ ref('fct_orders') }}

),

customers as (

    select * from {{ ref('dim_customers') }}

),

final as (

    select
        orders.order_id,
        orders.ordered_at,
        customers.created_at

    from orders

    inner join customers
        on orders.customer_id = customers.customer_id

    where orders.ordered_at < customers.created_at

)

select * from final
