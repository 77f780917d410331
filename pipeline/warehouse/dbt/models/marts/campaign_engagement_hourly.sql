{#- Per campaign and UTC hour with activity, like engage.campaign_rates_hourly: members whose
    first open/click/conversion falls in the hour, cumulative counts to the end of the hour and
    cumulative rates over the campaign's current audience size. Hours without activity have no
    row. Incremental per campaign: a run rebuilds every hour of the campaigns whose audience rows
    changed (a moved first touch changes two hours and all later cumulative values). Each rebuilt
    campaign also gets a marker row (hour NULL) so that a campaign left without any activity
    loses its old hours; the post-hook removes the markers and deleted campaigns' rows. -#}
-- depends_on: {{ ref('state_campaign_audience') }}
-- depends_on: {{ ref('state_campaigns') }}
{{ config(materialized='incremental', unique_key='campaign_id', incremental_strategy='delete+insert',
          post_hook=["delete from {{ this }} where hour is null",
                     "delete from {{ this }} where campaign_id not in (select campaign_id from {{ ref('cur_campaigns') }})"]) }}

with watermark as (
    {{ engage_watermark() }}
),

campaigns as (
    select c.campaign_id
    from {{ ref('cur_campaigns') }} as c
    {% if is_incremental() %}
    where c.campaign_id in (
        select campaign_id from {{ ref('state_campaign_audience') }} where _batch > (select b from watermark)
        union
        select campaign_id from {{ ref('state_campaigns') }} where _batch > (select b from watermark))
    {% endif %}
),

audience as (
    select ca.* from {{ ref('cur_campaign_audience') }} as ca
    where ca.campaign_id in (select campaign_id from campaigns)
),

sizes as (
    select campaign_id, count(*) as audience_size from audience group by campaign_id
),

touches as (
    select campaign_id, {{ engage_utc_hour('opened_at') }} as hour, 1 as o, 0 as c, 0 as v
    from audience where opened_at is not null
    union all
    select campaign_id, {{ engage_utc_hour('clicked_at') }}, 0, 1, 0
    from audience where clicked_at is not null
    union all
    select campaign_id, {{ engage_utc_hour('converted_at') }}, 0, 0, 1
    from audience where converted_at is not null
),

hours as (
    select campaign_id, hour,
           cast(sum(o) as bigint) as new_opens,
           cast(sum(c) as bigint) as new_clicks,
           cast(sum(v) as bigint) as new_conversions
    from touches
    group by campaign_id, hour
),

cumulative as (
    select h.*,
           cast(sum(new_opens) over w as bigint) as cum_opens,
           cast(sum(new_clicks) over w as bigint) as cum_clicks,
           cast(sum(new_conversions) over w as bigint) as cum_conversions
    from hours as h
    window w as (partition by campaign_id order by hour rows between unbounded preceding and current row)
)

select c.campaign_id, c.hour, c.new_opens, c.new_clicks, c.new_conversions,
       c.cum_opens, c.cum_clicks, c.cum_conversions,
       cast(coalesce(s.audience_size, 0) as bigint) as audience_size,
       {{ engage_rate('c.cum_opens', 's.audience_size') }} as open_rate,
       {{ engage_rate('c.cum_clicks', 's.audience_size') }} as click_rate,
       {{ engage_rate('c.cum_clicks', 'c.cum_opens') }} as click_to_open_rate,
       {{ engage_rate('c.cum_conversions', 's.audience_size') }} as conversion_rate,
       (select coalesce(max(_batch), 0) from {{ ref('stg_events') }}) as _batch
from cumulative as c
left join sizes as s on s.campaign_id = c.campaign_id
union all
select campaign_id, null, null, null, null, null, null, null, null, null, null, null, null,
       (select coalesce(max(_batch), 0) from {{ ref('stg_events') }})
from campaigns
