{#- The live rows of engage.templates, as in the source table. -#}
{{ engage_current('templates') }}
