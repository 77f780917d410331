{#- Application events written with engage.emit() (op message): one row per event. -#}
{{ config(materialized='view') }}

select event_id, commit_lsn, position, xid, commit_ts,
       {{ engage_json_text('record', 'topic') }} as message_topic,
       {{ engage_json_text('record', 'key') }} as message_key,
       {{ engage_json_member('record', 'payload') }} as payload,
       {{ engage_json_text('record', 'transactional') }} as transactional,
       record, topic, kafka_ts, _batch
from {{ ref('stg_events') }}
where op = 'message'
