{#- Fails for each key whose state row is not the newest row event staged for it, recomputed
    from scratch over stg_events (checks the incremental merge). Tagged audit: it reads the whole
    history, so the hourly cycle skips it (`--exclude tag:audit`); replay and CI run it. -#}
{% test engage_state_is_latest(model, table) %}
{%- set t = engage_tables()[table] -%}
{%- set pk = t['pk'] -%}
{%- set pk_types = {} -%}
{%- for name, type in t['columns'] if name in pk %}{% do pk_types.update({name: type}) %}{% endfor -%}
with keyed as (
    -- a version of the new key for inserts, updates and reads; of the old key for deletes and
    -- for updates that carry the old key (a key change, or REPLICA IDENTITY FULL)
    select {% for k in pk %}{{ engage_typed_column('record', 'new', k, pk_types[k]) }} as {{ k }}, {% endfor %}
           commit_lsn, position
    from {{ ref('stg_events') }}
    where table_name = 'engage.{{ table }}' and op in ('insert', 'update', 'read')
    union all
    select {% for k in pk %}{{ engage_typed_column('record', 'old', k, pk_types[k]) }} as {{ k }}, {% endfor %}
           commit_lsn, position
    from {{ ref('stg_events') }}
    where table_name = 'engage.{{ table }}'
      and (op = 'delete' or (op = 'update' and {{ engage_json_member('record', 'old') }} is not null
                             and {{ engage_json_member('record', 'old') }} <> 'null'))
),
latest as (
    select * from (
        select k.*, row_number() over (partition by {{ pk | join(', ') }}
                                       order by commit_lsn desc, position desc) as rn
        from keyed as k) as r
    where rn = 1
)
select l.*, s._commit_lsn, s._position
from latest as l
left join {{ model }} as s on {% for k in pk %}s.{{ k }} = l.{{ k }}{{ ' and ' if not loop.last }}{% endfor %}
where s._commit_lsn is null or s._commit_lsn <> l.commit_lsn or s._position <> l.position
{% endtest %}
