{#- The live rows of engage.members, as in the source table. -#}
{{ engage_current('members') }}
