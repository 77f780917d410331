{#- Fails for each combination of `columns` that occurs more than once (a composite key). -#}
{% test engage_unique_columns(model, columns) %}
select {{ columns | join(', ') }}, count(*) as n
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}
