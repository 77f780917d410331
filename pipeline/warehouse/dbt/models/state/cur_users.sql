{#- The live rows of engage.users, as in the source table. -#}
{{ engage_current('users') }}
