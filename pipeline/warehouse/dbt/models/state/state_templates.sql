{#- Current state of engage.templates, tombstones included (see macros/engage_state.sql). -#}
{{ engage_state('templates') }}
