{#- Messages of the dead-letter topic (engage.poison_policy = dead_letter): events Kafka refused
    for good. Kept as they came, once per event id, and never merged into the current state. -#}
{{ config(materialized='incremental', incremental_strategy='append') }}

with raw as (
    select r.*,
           row_number() over (partition by coalesce(r.event_id, r.object_key || '@' || cast(r.kafka_offset as varchar))
                              order by r.load_id, r.kafka_partition, r.kafka_offset) as copy_no
    from {{ source('engage_raw', 'raw_events') }} as r
    where r.topic = '{{ var("dead_letter_topic") }}'
    {% if is_incremental() %}
      and r.load_id > (select coalesce(max(load_id), 0) from {{ this }})
    {% endif %}
)

select coalesce(event_id, object_key || '@' || cast(kafka_offset as varchar)) as dead_letter_id,
       event_id, op, table_name, lsn,
       {{ engage_json_text('headers', 'engage.reason') }} as reason,
       {{ engage_json_text('headers', 'engage.topic') }} as original_topic,
       value as record, value_base64 as record_base64,
       topic, kafka_partition, kafka_offset, kafka_ts, object_key, load_id, loaded_at
from raw
where copy_no = 1
{% if is_incremental() %}
  and not exists (select 1 from {{ this }} as s
                  where s.dead_letter_id = coalesce(raw.event_id, raw.object_key || '@' || cast(raw.kafka_offset as varchar)))
{% endif %}
