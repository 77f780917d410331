{#- The current state of one engage table, incremental: one row per key ever seen, the newest
    version by (commit LSN, position), deletes and cuts kept as tombstones (_deleted) so that a
    late older event can never bring a row back or overwrite a newer one.

    Each run takes the row events staged since the last run (stg_events._batch), adds the state
    rows of the keys they touch, and keeps per key the version with the highest
    (_commit_lsn, _position); delete+insert replaces those keys. Columns an update lists in
    unchanged_toast (not in the WAL) are carried from the newest older version that had them.
    `read` (snapshot) rows order like inserts.

    A cut removes every version older than its place in the stream: a TRUNCATE of the table, or
    a delivery gap (`gap` record) once a snapshot of the table begun after it is done
    (macros/engage_gaps.sql), since every row the table still had is then read or written after
    the gap. Only the newest cut matters (older ones remove a subset). Any version older than it
    is a tombstone, _op 'truncate' or 'gap'. A cut that takes effect this run (its _batch is new:
    a TRUNCATE just staged, or a gap whose snapshot's `done` record was just staged, maybe cycles
    after the gap) also pulls in the live rows older than it. A gap without such a snapshot
    (engage.on_slot_loss = continue, or a snapshot still running or failed) removes nothing.

    The typed columns are engage_columns(table): the static list plus the columns added by DDL
    that a staged `schema` record announced. A run that first names such a column adds it to the
    table (on_schema_change append_new_columns): rows kept from before are NULL in it. -#}
{% macro engage_state(table) %}
{%- set t = engage_tables()[table] -%}
{%- set pk = t['pk'] -%}
{%- set cols = engage_columns(table) -%}
{%- set present = [] -%}
{%- if execute and is_incremental() -%}
  {%- for c in adapter.get_columns_in_relation(this) %}{% do present.append(c.name | lower) %}{% endfor -%}
{%- endif -%}
{%- set toastable = [] -%}
{%- for name, type in cols if type in ('text', 'json') %}{% do toastable.append(name) %}{% endfor -%}
{{ config(materialized='incremental', unique_key=pk, incremental_strategy='delete+insert',
          on_schema_change='append_new_columns') }}
{%- set key_match -%}{% for k in pk %}x.{{ k }} = w.{{ k }}{{ ' and ' if not loop.last }}{% endfor %}{%- endset %}
{%- set older -%}(x._commit_lsn < w._commit_lsn or (x._commit_lsn = w._commit_lsn and x._position < w._position)){%- endset %}

with watermark as (
    select {% if is_incremental() %}coalesce((select max(_batch) from {{ this }}), 0){% else %}0{% endif %} as b
),

run_batch as (
    select coalesce(max(_batch), 0) as b from {{ ref('stg_events') }}
),

events as (
    select e.*
    from {{ ref('stg_events') }} as e
    where e.table_name = 'engage.{{ table }}'
      and e.op in ('insert', 'update', 'delete', 'read', 'truncate')
      and e._batch > (select b from watermark)
),

cuts as (
    -- the newest TRUNCATE of the table or gap healed for it (see above)
    select _commit_lsn, _position, _batch, _kind
    from (select c.*, row_number() over (order by _commit_lsn desc, _position desc) as rn
          from (select commit_lsn as _commit_lsn, position as _position, _batch, 'truncate' as _kind
                from {{ ref('stg_events') }}
                where table_name = 'engage.{{ table }}' and op = 'truncate'
                union all
                select h.commit_lsn, h.position, h._batch, 'gap'
                from ({{ engage_healed_gaps(table) }}) as h) as c) as ranked
    where rn = 1
),

versions as (
    -- inserts, updates and snapshot reads: the new row
    select {% for name, type in cols %}{{ engage_typed_column('e.record', 'new', name, type) }} as {{ name }},
           {% endfor -%}
           {{ engage_json_member('e.record', 'new') }} as _row,
           {{ engage_json_member('e.record', 'unchanged_toast') }} as _unchanged_toast,
           e.event_id as _event_id, e.commit_lsn as _commit_lsn, e.position as _position,
           e.commit_ts as _commit_ts, e.op as _op, 0 as _old_key
    from events as e
    where e.op in ('insert', 'update', 'read')
    union all
    -- deletes, and updates that moved a row to another key: the old key goes
    select {% for name, type in cols %}{% if name in pk %}{{ engage_typed_column('e.record', 'old', name, type) }}{% else %}cast(null as {{ engage_sql_type(type) }}){% endif %} as {{ name }},
           {% endfor -%}
           cast(null as text), cast(null as text),
           e.event_id, e.commit_lsn, e.position, e.commit_ts, 'delete', 1
    from events as e
    where e.op = 'delete'
       or (e.op = 'update' and {{ engage_json_member('e.record', 'old') }} is not null
           and {{ engage_json_member('e.record', 'old') }} <> 'null')
),

candidates as (
    select {% for name, type in cols %}{{ name }}, {% endfor %}_row, _unchanged_toast,
           _event_id, _commit_lsn, _position, _commit_ts, _op, _old_key
    from versions
    {% if is_incremental() %}
    union all
    -- the state of the keys touched, and the live rows a new cut may remove
    select {% for name, type in cols -%}
           {%- if name in present %}x.{{ name }}{% else %}cast(null as {{ engage_sql_type(type) }}){% endif %}, {% endfor %}x._row, cast(null as text),
           x._event_id, x._commit_lsn, x._position, x._commit_ts, x._op, 0
    from {{ this }} as x
    where exists (select 1 from versions as w where {{ key_match }})
       or (not x._deleted and exists (
              select 1 from cuts as w
              where w._batch > (select b from watermark) and {{ older }}))
    {% endif %}
),

ranked as (
    select c.*,
           row_number() over (partition by {{ pk | join(', ') }}
                              order by _commit_lsn desc, _position desc, _old_key) as _rn
    from candidates as c
),

winners as (
    select * from ranked where _rn = 1
),

toast_carried as (
    -- rare: updates that did not carry some TOASTed values; take them from older versions
    select {% for name, type in cols -%}
           {%- if name in toastable %}
           case when {{ engage_lists_column('w._unchanged_toast', name) }} then
               (select x.{{ name }} from candidates as x
                where {{ key_match }} and {{ older }} and x._op <> 'delete'
                  and not {{ engage_lists_column('x._unchanged_toast', name) }}
                order by x._commit_lsn desc, x._position desc limit 1)
           else w.{{ name }} end as {{ name }},
           {%- else %}
           w.{{ name }},
           {%- endif %}
           {%- endfor %}
           w._row, w._unchanged_toast, w._event_id, w._commit_lsn, w._position, w._commit_ts, w._op
    from winners as w
    where w._unchanged_toast is not null
),

merged as (
    select {% for name, type in cols %}{{ name }}, {% endfor %}_row, _unchanged_toast,
           _event_id, _commit_lsn, _position, _commit_ts, _op
    from winners
    where _unchanged_toast is null
    union all
    select * from toast_carried
)

select {% for name, type in cols %}m.{{ name }}, {% endfor %}
       m._row, m._unchanged_toast, m._event_id, m._commit_lsn, m._position, m._commit_ts,
       case when tr._commit_lsn is not null
                 and (m._commit_lsn < tr._commit_lsn
                      or (m._commit_lsn = tr._commit_lsn and m._position < tr._position))
            then tr._kind else m._op end as _op,
       (m._op = 'delete'
        or coalesce(m._commit_lsn < tr._commit_lsn
                    or (m._commit_lsn = tr._commit_lsn and m._position < tr._position), false)) as _deleted,
       (select b from run_batch) as _batch
from merged as m
left join cuts as tr on true
{% endmacro %}

{#- The live rows of a state model, typed, with the row's JSON and its last event: the columns
    of engage_tables(), then the state model's other typed columns (added by DDL) as it has them. -#}
{% macro engage_current(table) %}
{%- set names = [] -%}
{%- for name, type in engage_tables()[table]['columns'] %}{% do names.append(name) %}{% endfor -%}
{%- set state = ref('state_' ~ table) -%}
{%- if execute -%}
  {%- set meta = ['_row', '_unchanged_toast', '_event_id', '_commit_lsn', '_position', '_commit_ts',
                  '_op', '_deleted', '_batch'] -%}
  {%- for c in adapter.get_columns_in_relation(state) if (c.name | lower) not in names + meta -%}
    {%- do names.append(c.name | lower) -%}
  {%- endfor -%}
{%- endif -%}
{{ config(materialized='view') }}
select {% for name in names %}{{ name }}, {% endfor %}
       _row, _event_id, _commit_ts
from {{ state }}
where not _deleted
{% endmacro %}
