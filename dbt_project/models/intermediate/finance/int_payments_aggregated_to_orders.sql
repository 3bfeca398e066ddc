{%- set payment_methods = ['credit_card', 'paypal', 'bank_transfer', 'gift_card'] -%}

with

payments as (

    select * from {{ ref('stg_payments__payments') }}

),

final as (

    select
        order_id,

        count(*) as payment_attempts,
        sum(case when is_successful then 1 else 0 end) as successful_payments,
        {% for payment_method in payment_methods -%}
            sum(
                case
                    when is_successful and payment_method = '{{ payment_method }}' then amount
                    else 0
                end
            ) as {{ payment_method }}_amount,
        {% endfor -%}
        sum(case when is_successful then amount else 0 end) as amount_paid,
        max(_loaded_at) as _loaded_at

    from payments

    group by order_id

)

select * from final
