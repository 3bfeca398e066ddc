{#-
    Fails for every row whose column is not strictly positive (or negative, with
    allow_zero=true). Nulls pass: pair it with not_null when they must not occur.
-#}
{% test positive_value(model, column_name, allow_zero=false) %}

select
    {{ column_name }} as failing_value
from {{ model }}
where {{ column_name }} {{ '<' if allow_zero else '<=' }} 0

{% endtest %}
