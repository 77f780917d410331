{#- Reconciliation with the source database: every campaign's counts and rates in
    campaign_performance equal `SELECT * FROM engage.campaign_rates(id)` as exported by
    `python -m pipeline.warehouse.reconcile` (with --vars 'reconcile_source: true'; else it checks nothing). -#}
{% if var('reconcile_source', false) %}
select coalesce(p.campaign_id, r.campaign_id) as campaign_id,
       p.audience_size, r.audience_size as source_audience_size,
       p.opens, r.opens as source_opens, p.open_rate, r.open_rate as source_open_rate
from {{ ref('campaign_performance') }} as p
full outer join {{ source('engage_raw', 'recon_campaign_rates') }} as r on r.campaign_id = p.campaign_id
where p.campaign_id is null or r.campaign_id is null
   or p.audience_size <> r.audience_size or p.opens <> r.opens
   or p.clicks <> r.clicks or p.conversions <> r.conversions
   or not {{ engage_rate_equal('p.open_rate', 'r.open_rate') }}
   or not {{ engage_rate_equal('p.click_rate', 'r.click_rate') }}
   or not {{ engage_rate_equal('p.click_to_open_rate', 'r.click_to_open_rate') }}
   or not {{ engage_rate_equal('p.conversion_rate', 'r.conversion_rate') }}
{% else %}
select 1 as nothing_to_reconcile where 1 = 0
{% endif %}
