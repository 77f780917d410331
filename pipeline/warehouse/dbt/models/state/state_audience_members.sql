{#- Current state of engage.audience_members, tombstones included (see macros/engage_state.sql). -#}
{{ engage_state('audience_members') }}
