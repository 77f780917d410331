{#- The live rows of engage.campaigns, as in the source table. -#}
{{ engage_current('campaigns') }}
