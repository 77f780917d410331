{#- Warns for each dead letter: an event Kafka refused, missing from the current state. -#}
{{ config(severity='warn') }}
select dead_letter_id, reason, original_topic from {{ ref('stg_dead_letters') }}
