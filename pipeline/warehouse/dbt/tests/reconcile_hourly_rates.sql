{#- Reconciliation with the source database: campaign_engagement_hourly equals
    engage.campaign_rates_hourly after a rollup (exported by `python -m pipeline.warehouse.reconcile`,
    which runs engage.rollup_rates() first; with --vars 'reconcile_source: true', else it checks nothing). -#}
{% if var('reconcile_source', false) %}
select coalesce(h.campaign_id, r.campaign_id) as campaign_id, coalesce(h.hour, r.hour) as hour,
       h.cum_opens, r.cum_opens as source_cum_opens
from {{ ref('campaign_engagement_hourly') }} as h
full outer join {{ source('engage_raw', 'recon_campaign_rates_hourly') }} as r
  on r.campaign_id = h.campaign_id and r.hour = h.hour
where h.campaign_id is null or r.campaign_id is null
   or h.new_opens <> r.new_opens or h.new_clicks <> r.new_clicks
   or h.new_conversions <> r.new_conversions
   or h.cum_opens <> r.cum_opens or h.cum_clicks <> r.cum_clicks
   or h.cum_conversions <> r.cum_conversions or h.audience_size <> r.audience_size
   or not {{ engage_rate_equal('h.open_rate', 'r.open_rate') }}
   or not {{ engage_rate_equal('h.click_rate', 'r.click_rate') }}
   or not {{ engage_rate_equal('h.click_to_open_rate', 'r.click_to_open_rate') }}
   or not {{ engage_rate_equal('h.conversion_rate', 'r.conversion_rate') }}
{% else %}
select 1 as nothing_to_reconcile where 1 = 0
{% endif %}
