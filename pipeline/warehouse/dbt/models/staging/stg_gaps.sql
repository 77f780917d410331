{#- `gap` records: an LSN range the shipper could not deliver. The test no_delivery_gaps shows
    each one as a warning on every build until it is dealt with (e.g. by a snapshot). -#}
{{ config(materialized='view') }}

select event_id, commit_lsn, position, commit_ts, table_name, record, topic, kafka_ts, _batch
from {{ ref('stg_events') }}
where op = 'gap'
