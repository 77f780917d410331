{#- Current state of engage.campaign_audience, tombstones included (see macros/engage_state.sql). -#}
{{ engage_state('campaign_audience') }}
