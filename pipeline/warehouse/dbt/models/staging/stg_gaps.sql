{#- `gap` records: an LSN range the shipper could not deliver (a lost replication slot). The
    state models remove what the gap may have left behind once a snapshot heals it for their
    table (macros/engage_gaps.sql); the test no_delivery_gaps warns about each gap until then. -#}
{{ config(materialized='view') }}

select event_id, commit_lsn, position, commit_ts, table_name,
       {{ engage_json_text('record', 'from_lsn') }} as from_lsn,
       {{ engage_json_text('record', 'to_lsn') }} as to_lsn,
       {{ engage_json_text('record', 'slot') }} as slot_name,
       {{ engage_json_text('record', 'reason') }} as reason,
       record, topic, kafka_ts, _batch
from {{ ref('stg_events') }}
where op = 'gap'
