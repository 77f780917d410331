-- What must be equal in the source and in a restored database: the product
-- data, the hourly rates, the live rates of every campaign, and whether the
-- hourly rates agree with a computation from scratch.
\pset footer off
SELECT 'data ' || t.name || ' ' || t.digest
  FROM (SELECT 'users' AS name, md5(string_agg(u::text, ',' ORDER BY u.user_id)) AS digest FROM engage.users AS u
        UNION ALL SELECT 'templates', md5(string_agg(t::text, ',' ORDER BY t.template_id)) FROM engage.templates AS t
        UNION ALL SELECT 'audiences', md5(string_agg(a::text, ',' ORDER BY a.audience_id)) FROM engage.audiences AS a
        UNION ALL SELECT 'members', md5(string_agg(m::text, ',' ORDER BY m.member_id)) FROM engage.members AS m
        UNION ALL SELECT 'audience_members', md5(string_agg(am::text, ',' ORDER BY am.audience_id, am.member_id))
                    FROM engage.audience_members AS am
        UNION ALL SELECT 'campaigns', md5(string_agg(c::text, ',' ORDER BY c.campaign_id)) FROM engage.campaigns AS c
        UNION ALL SELECT 'campaign_audience', md5(string_agg(ca::text, ',' ORDER BY ca.campaign_id, ca.member_id))
                    FROM engage.campaign_audience AS ca) AS t
 ORDER BY t.name;
SELECT 'hourly ' || h::text FROM engage.campaign_rates_hourly AS h ORDER BY h.campaign_id, h.hour;
SELECT 'live ' || c.campaign_id || ' ' || r::text
  FROM engage.campaigns AS c, engage.campaign_rates(c.campaign_id) AS r ORDER BY c.campaign_id;
WITH touch AS (
    SELECT ca.campaign_id, date_trunc('hour', t.at, 'UTC') AS hour, t.o, t.c, t.v
      FROM engage.campaign_audience AS ca
     CROSS JOIN LATERAL (VALUES (ca.opened_at, 1, 0, 0), (ca.clicked_at, 0, 1, 0),
                                (ca.converted_at, 0, 0, 1)) AS t(at, o, c, v)
     WHERE t.at IS NOT NULL
), per_hour AS (
    SELECT campaign_id, hour, sum(o)::bigint AS o, sum(c)::bigint AS c, sum(v)::bigint AS v
      FROM touch GROUP BY campaign_id, hour
), scratch AS (
    SELECT p.campaign_id, p.hour, p.o, p.c, p.v,
           sum(p.o) OVER w::bigint, sum(p.c) OVER w::bigint, sum(p.v) OVER w::bigint,
           (SELECT count(*) FROM engage.campaign_audience AS ca WHERE ca.campaign_id = p.campaign_id)
      FROM per_hour AS p
    WINDOW w AS (PARTITION BY p.campaign_id ORDER BY p.hour)
), kept AS (
    SELECT h.campaign_id, h.hour, h.new_opens, h.new_clicks, h.new_conversions,
           h.cum_opens, h.cum_clicks, h.cum_conversions, h.audience_size
      FROM engage.campaign_rates_hourly AS h
)
SELECT 'hourly rows not as computed from scratch: '
       || (SELECT count(*) FROM ((SELECT * FROM scratch EXCEPT SELECT * FROM kept)
                                 UNION ALL (SELECT * FROM kept EXCEPT SELECT * FROM scratch)) AS d);
