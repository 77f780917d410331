-- Data of the Engage example in a database at the previous release: a
-- campaign with an audience (duplicate emails), engagement, a rollup.
INSERT INTO engage.users (user_id, username, department) VALUES (1, 'john', 'growth');
INSERT INTO engage.templates (template_id, name, type) VALUES (1, 'flowers', 'lots of flowers');
INSERT INTO engage.audiences (audience_id, name, segment_types, location_type)
    VALUES (5, 'finance bros', '{finance,young}', 'nyc');
INSERT INTO engage.members (member_id, name, email)
    SELECT g, 'member ' || g, CASE WHEN g % 10 = 0 THEN 'DUP@example.com' ELSE 'm' || g || '@example.com' END
      FROM generate_series(1, 120) AS g;
INSERT INTO engage.audience_members (audience_id, member_id, email)
    SELECT 5, member_id, email FROM engage.members;
INSERT INTO engage.campaigns (campaign_id, template_id, user_id, audience_id, name, send_at)
    VALUES (7, 1, 1, 5, 'spring', '2026-06-06 18:00+00');
SELECT * FROM engage.build_campaign_audience(7, 100);
SELECT count(*) FROM (
    SELECT engage.record_engagement(7, member_id,
                                    CASE WHEN member_id % 3 = 0 THEN 'click' ELSE 'open' END,
                                    '2026-06-06 18:00+00'::timestamptz + member_id * interval '7 minutes')
      FROM engage.campaign_audience WHERE campaign_id = 7 AND member_id % 2 = 0) AS touched;
SELECT * FROM engage.rollup_rates();
SELECT count(*) FROM (
    SELECT engage.record_engagement(7, member_id, 'conversion', '2026-06-07 09:00+00')
      FROM engage.campaign_audience WHERE campaign_id = 7 AND member_id % 6 = 0) AS converted;
