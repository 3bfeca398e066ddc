with

orders as (

    select * from {{ ref('int_orders_enriched') }}

),

final as (

    select
        order_date,
        cast({{ dbt.date_trunc('month', 'order_date') }} as date) as order_month,
        count(*) as order_count,
        sum(case when order_status = 'cancelled' then 1 else 0 end) as cancelled_order_count,
        sum(case when order_status <> 'cancelled' then unit_count else 0 end) as units_sold,
        sum(case when order_status <> 'cancelled' then order_total else 0 end) as gross_revenue,
        sum(case when order_status = 'returned' then order_total else 0 end) as returned_revenue,
        sum(amount_paid) as amount_paid

    from orders

    group by order_date

)

select * from final
