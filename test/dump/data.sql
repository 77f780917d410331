-- The source database of the dump test: two audiences with duplicate and
-- invalid emails, three campaigns, engagement over several hours, a rollup,
-- then more activity left in the journal (first touches moved to earlier
-- hours, a top-up, members removed), so the dump holds rolled-up rates and
-- pending changes.  Times are fixed: runs are reproducible.
INSERT INTO engage.users (user_id, username, department) VALUES (1, 'john', 'growth'), (2, 'mary', 'retention');
INSERT INTO engage.templates (template_id, name, type) VALUES (1, 'flowers', 'html'), (2, 'sale', 'text');
INSERT INTO engage.audiences (audience_id, name, segment_types, location_type)
    VALUES (1, 'finance bros', '{finance,young}', 'nyc'), (2, 'gardeners', '{garden}', 'sf');
INSERT INTO engage.members (member_id, name, email)
    SELECT g, 'member ' || g,
           CASE WHEN g % 50 = 0 THEN NULL
                WHEN g % 17 = 0 THEN 'DUP' || (g % 3) || '@Example.com '
                ELSE 'm' || g || '@example.com' END
      FROM generate_series(1, 600) AS g;
INSERT INTO engage.audience_members (audience_id, member_id, email)
    SELECT CASE WHEN member_id <= 400 THEN 1 ELSE 2 END, member_id, email FROM engage.members;
INSERT INTO engage.audience_members (audience_id, member_id, email)
    SELECT 2, member_id, email FROM engage.members WHERE member_id BETWEEN 300 AND 400;
INSERT INTO engage.campaigns (campaign_id, template_id, user_id, audience_id, name, send_at) VALUES
    (1, 1, 1, 1, 'spring', '2026-06-06 08:00+00'),
    (2, 2, 2, 2, 'garden sale', '2026-06-06 09:30+00'),
    (3, 1, 2, 1, 'reminder', '2026-06-06 12:00+00');
SELECT * FROM engage.build_campaign_audience(1, 300);
SELECT * FROM engage.build_campaign_audience(2);
SELECT * FROM engage.build_campaign_audience(3, 50);

-- Engagement over six hours: opens for most, clicks for a third, conversions
-- for a fifth of the clickers, a few hours later.
SELECT count(*) FROM (
    SELECT engage.record_engagement(ca.campaign_id, ca.member_id,
               CASE WHEN ca.member_id % 15 = 0 THEN 'conversion'
                    WHEN ca.member_id % 3 = 0 THEN 'click' ELSE 'open' END,
               c.send_at + (ca.member_id * 7 % 360) * interval '1 minute')
      FROM engage.campaign_audience AS ca JOIN engage.campaigns AS c USING (campaign_id)
     WHERE ca.member_id % 4 <> 1) AS touched;
SELECT * FROM engage.rollup_rates();

-- Pending at dump time: earlier first touches (they move hours), late opens,
-- a top-up of campaign 1, members removed from campaign 2, campaign 3's
-- engagement.
SELECT count(*) FROM (
    SELECT engage.record_engagement(1, ca.member_id, 'open', '2026-06-06 08:10+00')
      FROM engage.campaign_audience AS ca WHERE ca.campaign_id = 1 AND ca.member_id % 10 = 2) AS earlier;
SELECT count(*) FROM (
    SELECT engage.record_engagement(1, ca.member_id, 'click', '2026-06-06 15:45+00')
      FROM engage.campaign_audience AS ca WHERE ca.campaign_id = 1 AND ca.member_id % 4 = 1) AS late;
SELECT * FROM engage.build_campaign_audience(1);
DELETE FROM engage.campaign_audience WHERE campaign_id = 2 AND member_id % 11 = 0;
SELECT count(*) FROM (
    SELECT engage.record_engagement(3, ca.member_id, 'click', '2026-06-06 13:20+00')
      FROM engage.campaign_audience AS ca WHERE ca.campaign_id = 3 AND ca.member_id % 2 = 0) AS third;
