with

customers as (

    select * from {{ ref('stg_shop__customers') }}

),

country_codes as (

    select * from {{ ref('country_codes') }}

),

orders as (

    select * from {{ ref('int_orders_enriched') }}

),

sessions as (

    select * from {{ ref('int_sessions_aggregated_to_customers') }}

),

customer_orders as (

    select
        customer_id,
        min(order_date) as first_order_date,
        max(order_date) as most_recent_order_date,
        count(*) as order_count,
        sum(case when order_status <> 'cancelled' then order_total else 0 end) as lifetime_value

    from orders

    group by customer_id

),

final as (

    select
        customers.customer_id,
        customers.full_name,
        customers.email,
        customers.country_code,
        country_codes.country_name,
        country_codes.region,
        customers.created_at,
        customer_orders.first_order_date,
        customer_orders.most_recent_order_date,
        {{ dbt.datediff(
            'cast(customers.created_at as date)', 'customer_orders.first_order_date', 'day'
        ) }} as days_to_first_order,
        coalesce(customer_orders.order_count, 0) as order_count,
        coalesce(customer_orders.lifetime_value, 0) as lifetime_value,
        coalesce(sessions.session_count, 0) as session_count,
        sessions.first_session_at,
        case
            when customer_orders.order_count > 1 then 'returning'
            when customer_orders.order_count = 1 then 'new'
            else 'prospect'
        end as customer_type

    from customers

    left join country_codes
        on customers.country_code = country_codes.country_code

    left join customer_orders
        on customers.customer_id = customer_orders.customer_id

    left join sessions
        on customers.customer_id = sessions.customer_id

)

select * from final
