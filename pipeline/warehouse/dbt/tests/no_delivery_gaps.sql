{#- Warns for each `gap` record: an LSN range the shipper could not deliver, so the current state
    may miss changes until the affected tables are re-snapshotted. -#}
{{ config(severity='warn') }}
select event_id, table_name, commit_ts, record from {{ ref('stg_gaps') }}
