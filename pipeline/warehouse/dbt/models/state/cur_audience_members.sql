{#- The live rows of engage.audience_members, as in the source table. -#}
{{ engage_current('audience_members') }}
