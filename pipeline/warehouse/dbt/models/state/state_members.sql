{#- Current state of engage.members, tombstones included (see macros/engage_state.sql). -#}
{{ engage_state('members') }}
