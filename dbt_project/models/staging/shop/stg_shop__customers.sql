with

source as (

    select * from {{ source('shop', 'customers') }}

),

latest as (

    {{ deduplicate('source', partition_by='id', order_by='_loaded_at desc') }}

),

final as (

    select
        -- ids
        cast(id as integer) as customer_id,

        -- attributes
        first_name,
        last_name,
        {{ dbt.concat(['first_name', "' '", 'last_name']) }} as full_name,
        lower(email) as email,
        upper(country_code) as country_code,

        -- timestamps
        cast(created_at as timestamp) as created_at,
        cast(updated_at as timestamp) as updated_at,
        cast(_loaded_at as timestamp) as _loaded_at

    from latest

)

select * from final
