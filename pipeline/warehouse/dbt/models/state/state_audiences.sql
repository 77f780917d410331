{#- Current state of engage.audiences, tombstones included (see macros/engage_state.sql). -#}
{{ engage_state('audiences') }}
