{#- Campaigns whose presentation rows may have changed since the model's last run: those with
    state changes of their own, of their audience rows, or of the template, user or audience they
    point to (state rows with _batch above the model's watermark). -#}
{% macro engage_affected_campaigns() %}
    select campaign_id from {{ ref('state_campaign_audience') }} where _batch > (select b from watermark)
    union
    select campaign_id from {{ ref('state_campaigns') }} where _batch > (select b from watermark)
    union
    select c.campaign_id from {{ ref('cur_campaigns') }} as c
    join {{ ref('state_templates') }} as t on t.template_id = c.template_id
    where t._batch > (select b from watermark)
    union
    select c.campaign_id from {{ ref('cur_campaigns') }} as c
    join {{ ref('state_users') }} as u on u.user_id = c.user_id
    where u._batch > (select b from watermark)
    union
    select c.campaign_id from {{ ref('cur_campaigns') }} as c
    join {{ ref('state_audiences') }} as a on a.audience_id = c.audience_id
    where a._batch > (select b from watermark)
{% endmacro %}

{#- The watermark CTE body of an incremental presentation model. -#}
{% macro engage_watermark() %}
    select {% if is_incremental() %}coalesce((select max(_batch) from {{ this }}), 0){% else %}0{% endif %} as b
{% endmacro %}
