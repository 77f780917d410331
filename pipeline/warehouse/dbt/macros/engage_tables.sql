{#- The captured engage tables: key columns and typed columns of the current-state models.
    Types: bigint, text, boolean, timestamptz, json (kept as JSON text: arrays, json/jsonb).
    Text and json columns (variable length) may be listed in a record's unchanged_toast.
    Columns added later by DDL are appended from `schema` records (engage_columns below). -#}
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

{#- The typed columns of engage.<table>'s state model: those of engage_tables(), then every other
    column a staged `schema` record of the table has announced, in the order first announced,
    typed by engage_column_type() of its first announcement. A column dropped (or renamed) in the
    source stays, NULL in versions written after the DDL, so no value already in the warehouse is
    lost; a retyped column keeps its first type. Names that are not plain lower-case identifiers,
    or that clash with the models' own `_` columns, stay in `_row` only. Read at execution time
    (dbt compiles a node just before it runs, after the staging of the same build): one query of
    the table's schema records per run; at parse time, or before staging exists, the static list. -#}
{% macro engage_columns(table) %}
  {%- set cols = engage_tables()[table]['columns'] | list -%}
  {%- set stg = ref('stg_events') -%}
  {%- if execute and load_relation(stg) is not none -%}
    {%- set known = [] -%}
    {%- for name, type in cols %}{% do known.append(name) %}{% endfor -%}
    {%- set reserved = ['_row', '_unchanged_toast', '_event_id', '_commit_lsn', '_position',
                        '_commit_ts', '_op', '_old_key', '_deleted', '_batch', '_rn'] -%}
    {%- set found = run_query(
          "select " ~ engage_json_member('record', 'columns') ~ " as columns from " ~ stg
          ~ " where op = 'schema' and table_name = 'engage." ~ table ~ "'"
          ~ " order by commit_lsn, position") -%}
    {%- for r in found.rows if r[0] is not none and r[0] != 'null' -%}
      {%- for c in fromjson(r[0]) -%}
        {%- set name = c['name'] -%}
        {%- if name not in known and name not in reserved
               and modules.re.fullmatch('[a-z_][a-z0-9_]{0,62}', name) -%}
          {%- do known.append(name) -%}
          {%- do cols.append((name, engage_column_type(c['type']))) -%}
        {%- endif -%}
      {%- endfor -%}
    {%- endfor -%}
  {%- endif -%}
  {{ return(cols) }}
{% endmacro %}

{#- The engage_tables() type of a column of PostgreSQL type pg_type (as a schema record names it,
    with its modifier): integers bigint, boolean, timestamptz, json/jsonb and arrays json (arrays
    are JSON arrays in records), everything else text (numeric too: every digit kept). -#}
{% macro engage_column_type(pg_type) %}
  {%- set t = (pg_type or '') | lower -%}
  {%- if t.endswith('[]') -%}{{ return('json') }}
  {%- elif t in ('smallint', 'integer', 'bigint', 'int2', 'int4', 'int8') -%}{{ return('bigint') }}
  {%- elif t in ('boolean', 'bool') -%}{{ return('boolean') }}
  {%- elif t == 'timestamptz' or (t.startswith('timestamp') and t.endswith('with time zone')) -%}{{ return('timestamptz') }}
  {%- elif t in ('json', 'jsonb') -%}{{ return('json') }}
  {%- else -%}{{ return('text') }}
  {%- endif -%}
{% endmacro %}
