{#- Current state of engage.users, tombstones included (see macros/engage_state.sql). -#}
{{ engage_state('users') }}
