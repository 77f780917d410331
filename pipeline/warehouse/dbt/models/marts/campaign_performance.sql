{#- One row per campaign: who sent it with which template to which audience, and how the
    audience responded. Rates as engage.campaign_rates() defines them (numeric division, NULL
    when the denominator is 0). Incremental: a run recomputes only the campaigns whose own rows,
    audience rows, template, user or audience changed; deleted campaigns are removed. -#}
-- depends_on: {{ ref('state_campaign_audience') }}
-- depends_on: {{ ref('state_campaigns') }}
-- depends_on: {{ ref('state_templates') }}
-- depends_on: {{ ref('state_users') }}
-- depends_on: {{ ref('state_audiences') }}
{{ config(materialized='incremental', unique_key='campaign_id', incremental_strategy='delete+insert',
          post_hook="delete from {{ this }} where campaign_id not in (select campaign_id from {{ ref('cur_campaigns') }})") }}

with watermark as (
    {{ engage_watermark() }}
),

campaigns as (
    select c.*
    from {{ ref('cur_campaigns') }} as c
    {% if is_incremental() %}
    where c.campaign_id in ({{ engage_affected_campaigns() }})
    {% endif %}
),

counts as (
    select ca.campaign_id,
           count(*) as audience_size,
           sum(case when ca.opened then 1 else 0 end) as opens,
           sum(case when ca.clicked then 1 else 0 end) as clicks,
           sum(case when ca.converted then 1 else 0 end) as conversions
    from {{ ref('cur_campaign_audience') }} as ca
    where ca.campaign_id in (select campaign_id from campaigns)
    group by ca.campaign_id
),

figures as (
    select c.campaign_id,
           cast(coalesce(n.audience_size, 0) as bigint) as audience_size,
           cast(coalesce(n.opens, 0) as bigint) as opens,
           cast(coalesce(n.clicks, 0) as bigint) as clicks,
           cast(coalesce(n.conversions, 0) as bigint) as conversions
    from campaigns as c
    left join counts as n on n.campaign_id = c.campaign_id
)

select c.campaign_id,
       c.name as campaign_name,
       c.type as campaign_type,
       c.send_at, c.sent, c.created_at, c.expires_at,
       c.template_id, t.name as template_name, t.type as template_type,
       c.user_id, u.username as sender_name, u.department as sender_department,
       c.audience_id, a.name as audience_name, a.segment_types, a.location_type,
       f.audience_size, f.opens, f.clicks, f.conversions,
       {{ engage_rate('f.opens', 'f.audience_size') }} as open_rate,
       {{ engage_rate('f.clicks', 'f.audience_size') }} as click_rate,
       {{ engage_rate('f.clicks', 'f.opens') }} as click_to_open_rate,
       {{ engage_rate('f.conversions', 'f.audience_size') }} as conversion_rate,
       (select coalesce(max(_batch), 0) from {{ ref('stg_events') }}) as _batch
from campaigns as c
join figures as f on f.campaign_id = c.campaign_id
left join {{ ref('cur_templates') }} as t on t.template_id = c.template_id
left join {{ ref('cur_users') }} as u on u.user_id = c.user_id
left join {{ ref('cur_audiences') }} as a on a.audience_id = c.audience_id
