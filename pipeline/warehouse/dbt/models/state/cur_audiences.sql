{#- The live rows of engage.audiences, as in the source table. -#}
{{ engage_current('audiences') }}
