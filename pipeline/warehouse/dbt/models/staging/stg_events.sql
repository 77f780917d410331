{#- Every event exactly once: the answer to "how to handle dupes?".

    The event id is `<commit LSN>:<position in the transaction>` (README "Event records"): decoding
    the same WAL again gives the same id, so a message Kafka holds twice (a shipper restart
    redelivers from its confirmed position) or a landing object loaded twice is the same id.
    Each run reads the raw rows of loads not yet staged (load_id watermark: an object landed late
    for an old hour is a new load, so it is picked up), keeps the first copy of each id among
    them (by load, topic, partition, offset) and drops ids already staged. Dead letters are not
    events of the stream: they go to stg_dead_letters. -#}
{{ config(materialized='incremental', incremental_strategy='append') }}

with raw as (
    select r.*
    from {{ source('engage_raw', 'raw_events') }} as r
    where r.topic <> '{{ var("dead_letter_topic") }}'
      and r.value is not null
    {% if is_incremental() %}
      and r.load_id > (select coalesce(max(load_id), 0) - {{ var('staging_lookback_loads') }}
                       from {{ this }})
    {% endif %}
),

parsed as (
    select {{ engage_json_text('r.value', 'id') }} as event_id,
           {{ engage_json_text('r.value', 'op') }} as op,
           {{ engage_json_text('r.value', 'table') }} as table_name,
           {{ engage_json_text('r.value', 'partition') }} as partition_name,
           {{ engage_json_text('r.value', 'lsn') }} as lsn,
           cast({{ engage_json_text('r.value', 'xid') }} as bigint) as xid,
           cast({{ engage_json_text('r.value', 'ts') }} as timestamptz) as commit_ts,
           {{ engage_json_member('r.value', 'pk') }} as pk,
           r.value as record,
           r.topic, r.kafka_partition, r.kafka_offset, r.kafka_ts, r.msg_key,
           r.object_key, r.load_id, r.loaded_at
    from raw as r
),

ranked as (
    select p.*,
           row_number() over (partition by event_id
                              order by load_id, topic, kafka_partition, kafka_offset) as copy_no
    from parsed as p
    where event_id is not null
)

select event_id,
       {{ engage_hex_to_bigint("split_part(split_part(event_id, ':', 1), '/', 1)") }} * 4294967296
         + {{ engage_hex_to_bigint("split_part(split_part(event_id, ':', 1), '/', 2)") }} as commit_lsn,
       cast(split_part(event_id, ':', 2) as bigint) as position,
       op, table_name, partition_name, lsn, xid, commit_ts, pk, record,
       topic, kafka_partition, kafka_offset, kafka_ts, msg_key, object_key, load_id, loaded_at,
       {% if is_incremental() %}(select coalesce(max(_batch), 0) + 1 from {{ this }}){% else %}1{% endif %} as _batch
from ranked
where copy_no = 1
{% if is_incremental() %}
  and not exists (select 1 from {{ this }} as s where s.event_id = ranked.event_id)
{% endif %}
