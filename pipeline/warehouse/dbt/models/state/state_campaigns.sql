{#- Current state of engage.campaigns, tombstones included (see macros/engage_state.sql). -#}
{{ engage_state('campaigns') }}
