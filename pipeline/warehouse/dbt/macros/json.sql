{#- Engine differences, as small dispatch macros (default = PostgreSQL; duckdb__ and redshift__
    variants where they differ). `doc` is an expression holding JSON text. -#}

{#- A top-level member as text (strings unquoted; objects and arrays as JSON text). -#}
{% macro engage_json_text(doc, key) %}{{ return(adapter.dispatch('engage_json_text', 'engage_wh')(doc, key)) }}{% endmacro %}
{% macro default__engage_json_text(doc, key) %}(({{ doc }})::json ->> '{{ key }}'){% endmacro %}
{% macro duckdb__engage_json_text(doc, key) %}json_extract_string({{ doc }}, '$."{{ key }}"'){% endmacro %}
{% macro redshift__engage_json_text(doc, key) %}json_extract_path_text({{ doc }}, '{{ key }}', true){% endmacro %}

{#- A top-level member as JSON text ('null' for a JSON null, SQL NULL when absent). -#}
{% macro engage_json_member(doc, key) %}{{ return(adapter.dispatch('engage_json_member', 'engage_wh')(doc, key)) }}{% endmacro %}
{% macro default__engage_json_member(doc, key) %}((({{ doc }})::json -> '{{ key }}')::text){% endmacro %}
{% macro duckdb__engage_json_member(doc, key) %}cast(json_extract({{ doc }}, '$."{{ key }}"') as varchar){% endmacro %}
{% macro redshift__engage_json_member(doc, key) %}json_extract_path_text({{ doc }}, '{{ key }}', true){% endmacro %}

{#- A member of a top-level object member (e.g. new.email) as text. -#}
{% macro engage_json_text2(doc, key1, key2) %}{{ return(adapter.dispatch('engage_json_text2', 'engage_wh')(doc, key1, key2)) }}{% endmacro %}
{% macro default__engage_json_text2(doc, key1, key2) %}(({{ doc }})::json #>> '{ {{- key1 }},{{ key2 -}} }'){% endmacro %}
{% macro duckdb__engage_json_text2(doc, key1, key2) %}json_extract_string({{ doc }}, '$."{{ key1 }}"."{{ key2 }}"'){% endmacro %}
{% macro redshift__engage_json_text2(doc, key1, key2) %}json_extract_path_text({{ doc }}, '{{ key1 }}', '{{ key2 }}', true){% endmacro %}

{#- A member of a top-level object member as JSON text. -#}
{% macro engage_json_member2(doc, key1, key2) %}{{ return(adapter.dispatch('engage_json_member2', 'engage_wh')(doc, key1, key2)) }}{% endmacro %}
{% macro default__engage_json_member2(doc, key1, key2) %}((({{ doc }})::json #> '{ {{- key1 }},{{ key2 -}} }')::text){% endmacro %}
{% macro duckdb__engage_json_member2(doc, key1, key2) %}cast(json_extract({{ doc }}, '$."{{ key1 }}"."{{ key2 }}"') as varchar){% endmacro %}
{% macro redshift__engage_json_member2(doc, key1, key2) %}json_extract_path_text({{ doc }}, '{{ key1 }}', '{{ key2 }}', true){% endmacro %}

{#- Hexadecimal text (up to 16 digits) as a bigint. -#}
{% macro engage_hex_to_bigint(hex) %}{{ return(adapter.dispatch('engage_hex_to_bigint', 'engage_wh')(hex)) }}{% endmacro %}
{% macro default__engage_hex_to_bigint(hex) %}(('x' || lpad({{ hex }}, 16, '0'))::bit(64)::bigint){% endmacro %}
{% macro duckdb__engage_hex_to_bigint(hex) %}cast('0x' || {{ hex }} as bigint){% endmacro %}
{% macro redshift__engage_hex_to_bigint(hex) %}strtol({{ hex }}, 16){% endmacro %}

{#- A rate: numerator / denominator, NULL when the denominator is 0. PostgreSQL and Redshift
    divide numerics like engage.campaign_rates(); DuckDB's decimal division gives a double. -#}
{% macro engage_rate(num, den) %}{{ return(adapter.dispatch('engage_rate', 'engage_wh')(num, den)) }}{% endmacro %}
{% macro default__engage_rate(num, den) %}(cast({{ num }} as numeric) / nullif({{ den }}, 0)){% endmacro %}
{% macro duckdb__engage_rate(num, den) %}(cast({{ num }} as double) / nullif({{ den }}, 0)){% endmacro %}

{#- True when a rate equals an expected value exported as text from the source (exactly where the
    engine divides numerics, else to 1e-12). Both NULL counts as equal. -#}
{% macro engage_rate_equal(actual, expected_text) %}{{ return(adapter.dispatch('engage_rate_equal', 'engage_wh')(actual, expected_text)) }}{% endmacro %}
{% macro default__engage_rate_equal(actual, expected_text) %}({{ actual }} is not distinct from cast({{ expected_text }} as numeric)){% endmacro %}
{% macro duckdb__engage_rate_equal(actual, expected_text) %}(({{ actual }} is null and {{ expected_text }} is null) or abs({{ actual }} - cast({{ expected_text }} as double)) <= 1e-12){% endmacro %}

{#- The start of the UTC hour of a timestamptz, as a timestamptz (whatever the session time zone). -#}
{% macro engage_utc_hour(ts) %}(date_trunc('hour', {{ ts }} at time zone 'UTC') at time zone 'UTC'){% endmacro %}

{#- True when a JSON array of column names (as text, e.g. unchanged_toast) lists column. -#}
{% macro engage_lists_column(array_text, column) %}coalesce({{ array_text }} like '%"{{ column }}"%', false){% endmacro %}
