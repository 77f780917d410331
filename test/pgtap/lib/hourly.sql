-- Shared by rollup.sql and concurrency.sql: the hourly rows of a campaign as the
-- rollup keeps them, and the same computed from scratch from campaign_audience.
CREATE FUNCTION pg_temp.hourly(campaign bigint)
RETURNS TABLE (hour timestamptz, new_opens bigint, new_clicks bigint, new_conversions bigint,
               cum_opens bigint, cum_clicks bigint, cum_conversions bigint, audience_size bigint,
               open_rate numeric, click_rate numeric, click_to_open_rate numeric, conversion_rate numeric)
LANGUAGE sql AS $$
    SELECT h.hour, h.new_opens, h.new_clicks, h.new_conversions, h.cum_opens, h.cum_clicks,
           h.cum_conversions, h.audience_size, h.open_rate, h.click_rate, h.click_to_open_rate,
           h.conversion_rate
    FROM engage.campaign_rates_hourly AS h WHERE h.campaign_id = campaign ORDER BY h.hour
$$;
CREATE FUNCTION pg_temp.hourly_from_scratch(campaign bigint)
RETURNS TABLE (hour timestamptz, new_opens bigint, new_clicks bigint, new_conversions bigint,
               cum_opens bigint, cum_clicks bigint, cum_conversions bigint, audience_size bigint,
               open_rate numeric, click_rate numeric, click_to_open_rate numeric, conversion_rate numeric)
LANGUAGE sql AS $$
    WITH touch AS (
        SELECT date_trunc('hour', t.at, 'UTC') AS hour, t.o, t.c, t.v
        FROM engage.campaign_audience AS ca
        CROSS JOIN LATERAL (VALUES (ca.opened_at, 1, 0, 0), (ca.clicked_at, 0, 1, 0),
                                   (ca.converted_at, 0, 0, 1)) AS t(at, o, c, v)
        WHERE ca.campaign_id = campaign AND t.at IS NOT NULL
    ), per_hour AS (
        SELECT touch.hour, sum(o)::bigint AS o, sum(c)::bigint AS c, sum(v)::bigint AS v
        FROM touch GROUP BY touch.hour
    ), cum AS (
        SELECT p.*, sum(o) OVER w::bigint AS co, sum(c) OVER w::bigint AS cc, sum(v) OVER w::bigint AS cv,
               (SELECT count(*) FROM engage.campaign_audience AS ca WHERE ca.campaign_id = campaign) AS n
        FROM per_hour AS p WINDOW w AS (ORDER BY p.hour)
    )
    SELECT hour, o, c, v, co, cc, cv, n, co::numeric / nullif(n, 0), cc::numeric / nullif(n, 0),
           cc::numeric / nullif(co, 0), cv::numeric / nullif(n, 0)
    FROM cum ORDER BY hour
$$;
