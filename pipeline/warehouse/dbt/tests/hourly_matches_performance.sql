{#- The last hour of each campaign in campaign_engagement_hourly must carry the same cumulative
    counts and audience size as campaign_performance (two computations of one thing). -#}
with last_hours as (
    select * from (
        select h.*, row_number() over (partition by campaign_id order by hour desc) as rn
        from {{ ref('campaign_engagement_hourly') }} as h) as r
    where rn = 1
)
select p.campaign_id, p.opens, h.cum_opens, p.clicks, h.cum_clicks,
       p.conversions, h.cum_conversions, p.audience_size, h.audience_size as hourly_size
from {{ ref('campaign_performance') }} as p
left join last_hours as h on h.campaign_id = p.campaign_id
where (h.campaign_id is null and p.opens > 0)
   or (h.campaign_id is not null
       and (p.opens <> h.cum_opens or p.clicks <> h.cum_clicks
            or p.conversions <> h.cum_conversions or p.audience_size <> h.audience_size))
