{#-
    Incremental: each run re-reads the rows loaded within `lookback_days` of the newest
    _loaded_at already in the table, deletes those order_item_ids and inserts them again.
    Late-arriving lines and changed orders are picked up; re-runs never duplicate a key.
-#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='order_item_id',
        on_schema_change='append_new_columns',
        tags=['incremental'],
    )
}}

with

order_items as (

    select * from {{ ref('int_order_items_joined') }}

),

orders as (

    select * from {{ ref('int_orders_enriched') }}

),

joined as (

    select
        order_items.order_item_id,
        order_items.order_id,
        orders.customer_id,
        order_items.product_id,
        orders.order_status,
        orders.ordered_at,
        orders.order_date,
        order_items.category,
        order_items.quantity,
        order_items.unit_price,
        order_items.line_amount,
        -- A line must be rebuilt when either it or its order changed.
        greatest(order_items._loaded_at, orders._loaded_at) as _loaded_at

    from order_items

    inner join orders
        on order_items.order_id = orders.order_id

),

final as (

    select * from joined

    {% if is_incremental() %}
        where _loaded_at >= (
            select {{ dbt.dateadd('day', -1 * var('lookback_days', 3) | int, 'max(_loaded_at)') }}
            from {{ this }}
        )
    {% endif %}

)

select * from final
