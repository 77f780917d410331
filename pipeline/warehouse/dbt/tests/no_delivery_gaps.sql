{#- Warns for each `gap` record (an LSN range the shipper could not deliver) and each engage
    table it is not healed for yet: that table may still hold rows deleted during the gap until a
    snapshot of it begun after the gap is done (macros/engage_gaps.sql). Under
    engage.on_slot_loss = continue there is no such snapshot: the warning stays until one is
    requested (engage.snapshot()). -#}
{{ config(severity='warn') }}
{% for table in engage_tables() %}
select g.event_id, g.from_lsn, g.to_lsn, g.reason, 'engage.{{ table }}' as unhealed_table
from {{ ref('stg_gaps') }} as g
where not exists (select 1 from ({{ engage_healed_gaps(table) }}) as h
                  where h.commit_lsn = g.commit_lsn and h.position = g.position)
{{ 'union all' if not loop.last }}
{% endfor %}
