{#- The live rows of engage.campaign_audience, as in the source table. -#}
{{ engage_current('campaign_audience') }}
