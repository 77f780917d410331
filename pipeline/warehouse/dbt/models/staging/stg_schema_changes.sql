{#- `schema` records: a table's columns after a DDL, in stream order. The state models keep each
    row's full JSON (`_row`), so a new column is in the warehouse before any model names it. -#}
{{ config(materialized='view') }}

select event_id, commit_lsn, position, commit_ts, table_name,
       {{ engage_json_member('record', 'columns') }} as columns, record, _batch
from {{ ref('stg_events') }}
where op = 'schema'
