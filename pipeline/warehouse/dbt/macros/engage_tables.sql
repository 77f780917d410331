{#- The captured engage tables: key columns and typed columns of the current-state models.
    Types: bigint, text, boolean, timestamptz, json (kept as JSON text: arrays, json/jsonb).
    `toastable` columns (variable length) may be listed in a record's unchanged_toast.
    A column not listed here still reaches the warehouse in the state models' `_row` JSON. -#}
{% macro engage_tables() %}
  {{ return({
    'users': {'pk': ['user_id'], 'columns': [
        ('user_id', 'bigint'), ('username', 'text'), ('department', 'text'),
        ('contact', 'text'), ('created_at', 'timestamptz')]},
    'templates': {'pk': ['template_id'], 'columns': [
        ('template_id', 'bigint'), ('name', 'text'), ('type', 'text'),
        ('created_at', 'timestamptz')]},
    'audiences': {'pk': ['audience_id'], 'columns': [
        ('audience_id', 'bigint'), ('name', 'text'), ('segment_types', 'json'),
        ('location_type', 'text'), ('created_at', 'timestamptz')]},
    'members': {'pk': ['member_id'], 'columns': [
        ('member_id', 'bigint'), ('name', 'text'), ('email', 'text'), ('contact', 'text'),
        ('created_at', 'timestamptz')]},
    'audience_members': {'pk': ['audience_id', 'member_id'], 'columns': [
        ('audience_id', 'bigint'), ('member_id', 'bigint'), ('email', 'text'),
        ('contact', 'text'), ('added_at', 'timestamptz')]},
    'campaigns': {'pk': ['campaign_id'], 'columns': [
        ('campaign_id', 'bigint'), ('template_id', 'bigint'), ('user_id', 'bigint'),
        ('audience_id', 'bigint'), ('name', 'text'), ('type', 'text'),
        ('send_at', 'timestamptz'), ('sent', 'boolean'), ('created_at', 'timestamptz'),
        ('expires_at', 'timestamptz')]},
    'campaign_audience': {'pk': ['campaign_id', 'member_id'], 'columns': [
        ('campaign_id', 'bigint'), ('member_id', 'bigint'), ('email', 'text'),
        ('opened', 'boolean'), ('clicked', 'boolean'), ('converted', 'boolean'),
        ('opened_at', 'timestamptz'), ('clicked_at', 'timestamptz'),
        ('converted_at', 'timestamptz')]},
  }) }}
{% endmacro %}

{#- SQL type of a column type of engage_tables(). -#}
{% macro engage_sql_type(type) %}{{ 'text' if type == 'json' else type }}{% endmacro %}

{#- Column `name` of type `type` taken from the record's `section` (new or old). A json column
    listed in json_null is the JSON null 'null'; other nulls are SQL NULL. -#}
{% macro engage_typed_column(record, section, name, type) -%}
  {%- if type == 'json' -%}
    case when {{ engage_lists_column(engage_json_member(record, 'json_null'), name) }} then 'null'
         else nullif({{ engage_json_member2(record, section, name) }}, 'null') end
  {%- else -%}
    cast({{ engage_json_text2(record, section, name) }} as {{ type }})
  {%- endif -%}
{%- endmacro %}
