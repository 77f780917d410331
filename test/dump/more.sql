-- Activity after the restore, run on the source and on every restored
-- database: it must be rolled up the same way everywhere (the restored
-- databases write it with transaction ids of another cluster).
INSERT INTO engage.campaigns (campaign_id, template_id, user_id, audience_id, name, send_at, created_at)
    VALUES (4, 2, 1, 2, 'autumn', '2026-06-07 07:00+00', '2026-06-07 06:00+00');
SELECT * FROM engage.build_campaign_audience(4, 120);
SELECT count(*) FROM (
    SELECT engage.record_engagement(4, ca.member_id, 'open', '2026-06-07 07:00+00'::timestamptz + (ca.member_id % 90) * interval '1 minute')
      FROM engage.campaign_audience AS ca WHERE ca.campaign_id = 4) AS opened;
SELECT count(*) FROM (
    SELECT engage.record_engagement(1, ca.member_id, 'conversion', '2026-06-06 23:30+00')
      FROM engage.campaign_audience AS ca WHERE ca.campaign_id = 1 AND ca.member_id % 9 = 0) AS converted;
SELECT count(*) FROM (
    SELECT engage.record_engagement(2, ca.member_id, 'open', '2026-06-06 09:31+00')
      FROM engage.campaign_audience AS ca WHERE ca.campaign_id = 2 AND ca.member_id % 7 = 0) AS earlier;
DELETE FROM engage.campaign_audience WHERE campaign_id = 1 AND member_id % 13 = 0;
DELETE FROM engage.campaigns WHERE campaign_id = 3;
