{#- Delivery gaps and the snapshots that heal them (README.md, "A lost slot" and "Snapshots").

    A `gap` record (op gap, no table, id `<to_lsn>:0`) says that the events committed in an LSN
    range were never shipped: rows deleted in the source then are still live here. Under
    engage.on_slot_loss = resnapshot the shipper then reads every captured table again; a table's
    snapshot is framed by `snapshot` records on the control topic ({"snapshot": {"id", "reason",
    "state": "started" | "done"}}, keyed and tabled by the table's name).

    A gap is healed for a table by a snapshot of that table that began after the gap (a `started`
    record with a later id) and read it to the end (a `done` record of the same snapshot id). Its
    reads and the stream since the gap then carry every row the table still has, so any version
    older than the gap is gone. A `done` alone is not enough: a snapshot open when the slot was
    lost keeps going after the gap from its last acknowledged chunk without starting again, and
    the rows it read before the gap would be removed although they exist. Such a gap stays
    unhealed (no_delivery_gaps warns) until a snapshot starts after it. -#}

{#- One row per gap record healed for engage.<table>: the gap's commit_lsn and position, and the
    stg_events batch from which the gap and its healing snapshot's records are all staged (the
    first such batch, when several snapshots heal it): from that batch on the gap acts on the
    table as a TRUNCATE at the gap's place. -#}
{% macro engage_healed_gaps(table) %}
    select g.commit_lsn, g.position,
           min(greatest(g._batch, s._batch, d._batch)) as _batch
    from {{ ref('stg_events') }} as g
    join {{ ref('stg_events') }} as s
      on s.op = 'snapshot' and s.table_name = 'engage.{{ table }}'
     and {{ engage_json_text2('s.record', 'snapshot', 'state') }} = 'started'
     and (s.commit_lsn > g.commit_lsn or (s.commit_lsn = g.commit_lsn and s.position > g.position))
    join {{ ref('stg_events') }} as d
      on d.op = 'snapshot' and d.table_name = s.table_name
     and {{ engage_json_text2('d.record', 'snapshot', 'state') }} = 'done'
     and {{ engage_json_text2('d.record', 'snapshot', 'id') }} = {{ engage_json_text2('s.record', 'snapshot', 'id') }}
     and (d.commit_lsn > s.commit_lsn or (d.commit_lsn = s.commit_lsn and d.position > s.position))
    where g.op = 'gap'
    group by g.commit_lsn, g.position
{% endmacro %}
