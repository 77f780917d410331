# shellcheck shell=bash
# The decode workload, shared by bench/decode.sh and bench/ship.sh.  Source
# it; it defines constants and functions only.  The functions print SQL, to be
# piped into psql on the bench database of a cluster made with scripts/lib.sh.
#
#   workload_sizes ROWS UPDATES MEMBERS   sets AUDIENCES and CAMPAIGNS
#   workload_setup_sql                    parent rows, user triggers off, VACUUM ANALYZE
#   workload_changes_sql                  the row changes: ROWS + UPDATES of them
#
# The row changes are ROWS inserts into engage.audience_members in
# INSERT_BATCH-row transactions, then UPDATES single-row updates of
# engage.campaign_audience in UPDATE_BATCH-row transactions, with the user
# triggers of both tables disabled so that the stream holds exactly
# ROWS + UPDATES row changes.  The parent rows are MEMBERS members, AUDIENCES
# audiences and CAMPAIGNS campaigns of MEMBERS audience rows each.

# shellcheck disable=SC2034  # used by the scripts that source this file
INSERT_BATCH=1000
# shellcheck disable=SC2034
UPDATE_BATCH=100

# Sets the sizes the SQL below is written for: ROWS, UPDATES and MEMBERS (as
# given), AUDIENCES and CAMPAIGNS (enough parent rows for them).
workload_sizes() {
    ROWS=$1 UPDATES=$2 MEMBERS=$3
    AUDIENCES=$(( (ROWS + MEMBERS - 1) / MEMBERS ))
    CAMPAIGNS=$(( (UPDATES + MEMBERS - 1) / MEMBERS ))
}

# Prints the SQL that creates the extension and the parent rows (run it in the
# bench database before any slot is created).
workload_setup_sql() {
    cat <<SQL
CREATE EXTENSION pg_engage;
INSERT INTO engage.users (username, department) VALUES ('bench', 'marketing');
INSERT INTO engage.templates (name, type) VALUES ('bench', 'newsletter');
INSERT INTO engage.audiences (name, segment_types, location_type)
SELECT 'audience ' || a, '{newsletter,eu}', 'country' FROM generate_series(1, $AUDIENCES) a;
INSERT INTO engage.members (name, email, contact)
SELECT 'Member ' || m, 'member' || m || '@example.com', '+1 555 ' || lpad(m::text, 7, '0')
FROM generate_series(1, $MEMBERS) m;
INSERT INTO engage.campaigns (template_id, user_id, audience_id, name)
SELECT 1, 1, 1 + (c - 1) % $AUDIENCES, 'campaign ' || c FROM generate_series(1, $CAMPAIGNS) c;
INSERT INTO engage.campaign_audience (campaign_id, member_id, email)
SELECT c, m, 'member' || m || '@example.com'
FROM generate_series(1, $CAMPAIGNS) c, generate_series(1, $MEMBERS) m;
-- The workload is exactly the row changes below: user triggers of the two
-- tables (the rollup journal) would add changes of their own.  Foreign keys
-- are still checked.
ALTER TABLE engage.audience_members DISABLE TRIGGER USER;
ALTER TABLE engage.campaign_audience DISABLE TRIGGER USER;
VACUUM ANALYZE;
SQL
}

# Prints the SQL of the workload's row changes (two DO blocks that commit
# every batch).
workload_changes_sql() {
    cat <<SQL
DO \$\$
BEGIN
    FOR b IN 0 .. ($ROWS - 1) / $INSERT_BATCH LOOP
        INSERT INTO engage.audience_members (audience_id, member_id, email, contact)
        SELECT 1 + k / $MEMBERS, 1 + k % $MEMBERS,
               'member' || (1 + k % $MEMBERS) || '@example.com',
               CASE WHEN k % 4 <> 3 THEN '+1 555 ' || lpad((1 + k % $MEMBERS)::text, 7, '0') END
        FROM generate_series(b::bigint * $INSERT_BATCH,
                             least($ROWS, (b + 1)::bigint * $INSERT_BATCH) - 1) k;
        COMMIT;
    END LOOP;
END
\$\$;
DO \$\$
DECLARE
    ts timestamptz;
BEGIN
    FOR i IN 0 .. $UPDATES - 1 LOOP
        ts := clock_timestamp();
        UPDATE engage.campaign_audience
           SET opened = true, opened_at = ts,
               clicked = (i % 4 = 0), clicked_at = CASE WHEN i % 4 = 0 THEN ts END
         WHERE campaign_id = 1 + i / $MEMBERS AND member_id = 1 + i % $MEMBERS;
        IF (i + 1) % $UPDATE_BATCH = 0 THEN
            COMMIT;
        END IF;
    END LOOP;
END
\$\$;
SQL
}
