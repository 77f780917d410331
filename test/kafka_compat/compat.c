/*
 * compat.c - prove that the system's librdkafka works against a real Kafka broker.
 *
 * Usage: compat BOOTSTRAP [N]
 *
 * Prints TAP ("1..5", then "ok N - name" / "not ok N - name: reason") on stdout and
 * librdkafka warnings on stderr; exits 1 if any check failed, 2 on a setup error.
 *
 *   1. plain producer: N messages, every delivery report successful
 *   2. idempotent producer (enable.idempotence=true): N messages, flush, all persisted
 *   3. consumer with assign(): reads both topics back, count and order per partition
 *   4. consumer group with subscribe(): reads the plain topic, commits, checks committed offsets
 *   5. transactions: commit M, abort M (flushed to the log first), commit M; read_committed sees
 *      exactly the 2M committed ones, read_uncommitted sees all 3M
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#define NPART 3          /* partitions of every test topic */
#define TIMEOUT_MS 60000 /* deadline of each consume / flush / transactional call */

static const char *bootstrap;
static char errbuf[512];

/* Messages read back by a consumer. */
struct msg {
    int32_t partition;
    int64_t offset;
    char *value;
};

struct collected {
    struct msg *v;
    int n, cap;
};

/* Delivery report tally of one producer. */
struct dr_stats {
    int ok, failed, not_persisted;
    char first_error[256];
};

/* Monotonic milliseconds. */
static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Format a failure reason into errbuf and return 0 (for "return fail(...)"). */
static int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    va_end(ap);
    return 0;
}

/* Forward librdkafka logs of level WARNING and worse to stderr. */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    if (level <= 4)
        fprintf(stderr, "# %s: %s: %s\n", rd_kafka_name(rk), fac, buf);
}

/* Print client-level errors to stderr (librdkafka retries most of them itself). */
static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)opaque;
    fprintf(stderr, "# %s: error %s: %s\n", rd_kafka_name(rk),
            rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

/* Count delivery reports into the dr_stats given as the conf opaque. */
static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct dr_stats *st = opaque;
    (void)rk;
    if (m->err) {
        if (!st->failed)
            snprintf(st->first_error, sizeof st->first_error, "%s", rd_kafka_err2str(m->err));
        st->failed++;
    } else {
        st->ok++;
    }
    if (rd_kafka_message_status(m) != RD_KAFKA_MSG_STATUS_PERSISTED)
        st->not_persisted++;
}

/* Create a client of the given type with bootstrap.servers and NULL-terminated key/value pairs. */
static rd_kafka_t *client(rd_kafka_type_t type, void *opaque, const char **kv)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;

    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof err) != RD_KAFKA_CONF_OK)
        goto bad;
    for (; kv && kv[0]; kv += 2)
        if (rd_kafka_conf_set(conf, kv[0], kv[1], err, sizeof err) != RD_KAFKA_CONF_OK)
            goto bad;
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    if (type == RD_KAFKA_PRODUCER)
        rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
    rd_kafka_conf_set_opaque(conf, opaque);
    rk = rd_kafka_new(type, conf, err, sizeof err);
    if (!rk) {
        fail("rd_kafka_new: %s", err);
        return NULL;
    }
    return rk;
bad:
    rd_kafka_conf_destroy(conf);
    fail("config: %s", err);
    return NULL;
}

/* Create the topics (NPART partitions, replication 1); already existing ones are fine. */
static int create_topics(const char **names, int count)
{
    rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, NULL, NULL);
    rd_kafka_NewTopic_t *nt[8];
    rd_kafka_queue_t *q;
    rd_kafka_event_t *ev;
    const rd_kafka_topic_result_t **res;
    size_t nres, i;
    int okay = 1;
    char err[256];

    if (!rk)
        return 0;
    q = rd_kafka_queue_new(rk);
    for (i = 0; i < (size_t)count; i++)
        nt[i] = rd_kafka_NewTopic_new(names[i], NPART, 1, err, sizeof err);
    rd_kafka_CreateTopics(rk, nt, (size_t)count, NULL, q);
    ev = rd_kafka_queue_poll(q, TIMEOUT_MS);
    if (!ev) {
        okay = fail("CreateTopics: no result within %d ms", TIMEOUT_MS);
    } else if (rd_kafka_event_error(ev)) {
        okay = fail("CreateTopics: %s", rd_kafka_event_error_string(ev));
    } else {
        res = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &nres);
        for (i = 0; i < nres; i++) {
            rd_kafka_resp_err_t e = rd_kafka_topic_result_error(res[i]);
            if (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
                okay = fail("CreateTopics %s: %s", rd_kafka_topic_result_name(res[i]),
                            rd_kafka_topic_result_error_string(res[i]));
        }
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_NewTopic_destroy_array(nt, (size_t)count);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    return okay;
}

/* Produce value "<prefix>-<i>" for i in [from, from+n) to partition i % NPART, copying the payload. */
static int produce_range(rd_kafka_t *rk, const char *topic, const char *prefix, int from, int n)
{
    char val[64], key[32];
    for (int i = from; i < from + n; i++) {
        rd_kafka_resp_err_t e;
        snprintf(val, sizeof val, "%s-%d", prefix, i);
        snprintf(key, sizeof key, "k%d", i);
        for (;;) {
            e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(i % NPART),
                                  RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE(val, strlen(val)),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
            if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                break;
            rd_kafka_poll(rk, 100);
        }
        if (e)
            return fail("produce %s: %s", val, rd_kafka_err2str(e));
        rd_kafka_poll(rk, 0);
    }
    return 1;
}

/* Fail if the producer raised a fatal error. */
static int no_fatal(rd_kafka_t *rk)
{
    char err[256];
    rd_kafka_resp_err_t e = rd_kafka_fatal_error(rk, err, sizeof err);
    return e ? fail("fatal error %s: %s", rd_kafka_err2name(e), err) : 1;
}

/* Produce n messages with a producer configured by kv, flush, and check every delivery report. */
static int produce_checked(const char *topic, const char *prefix, int n, const char **kv)
{
    struct dr_stats st = {0};
    rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, &st, kv);
    int okay;
    rd_kafka_resp_err_t e;

    if (!rk)
        return 0;
    okay = produce_range(rk, topic, prefix, 0, n);
    e = rd_kafka_flush(rk, TIMEOUT_MS);
    if (okay && e)
        okay = fail("flush: %s (%d of %d reported)", rd_kafka_err2str(e), st.ok + st.failed, n);
    if (okay)
        okay = no_fatal(rk);
    if (okay && st.failed)
        okay = fail("%d of %d delivery reports failed, first: %s", st.failed, n, st.first_error);
    if (okay && st.ok != n)
        okay = fail("%d of %d messages reported delivered", st.ok, n);
    if (okay && st.not_persisted)
        okay = fail("%d messages not in status PERSISTED", st.not_persisted);
    rd_kafka_destroy(rk);
    return okay;
}

/* Append a copy of message m to c. */
static void collect(struct collected *c, const rd_kafka_message_t *m)
{
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 256;
        c->v = realloc(c->v, (size_t)c->cap * sizeof *c->v);
        if (!c->v)
            abort();
    }
    c->v[c->n].partition = m->partition;
    c->v[c->n].offset = m->offset;
    c->v[c->n].value = strndup(m->payload ? (const char *)m->payload : "", m->len);
    c->n++;
}

/* Free what collect() stored. */
static void collected_free(struct collected *c)
{
    for (int i = 0; i < c->n; i++)
        free(c->v[i].value);
    free(c->v);
    c->v = NULL;
    c->n = c->cap = 0;
}

/*
 * Poll consumer rk into c until it holds at least `expected` messages and, if eof_parts > 0,
 * that many partitions reported EOF after their last message; or until TIMEOUT_MS.
 */
static int consume(rd_kafka_t *rk, struct collected *c, int expected, int eof_parts)
{
    int64_t deadline = now_ms() + TIMEOUT_MS;
    int eof[64] = {0}; /* indexed by topic slot * NPART + partition; topics told apart by name */
    char names[64 / NPART][128] = {{0}};
    char last_err[256] = "";

    while (now_ms() < deadline) {
        int neof = 0;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (m) {
            const char *t = rd_kafka_topic_name(m->rkt);
            int slot = 0;
            while (slot < 64 / NPART && names[slot][0] && strcmp(names[slot], t))
                slot++;
            if (slot == 64 / NPART || m->partition < 0 || m->partition >= NPART) {
                fail("unexpected message from %s [%d]", t, (int)m->partition);
                rd_kafka_message_destroy(m);
                return 0;
            }
            snprintf(names[slot], sizeof names[slot], "%s", t);
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                eof[slot * NPART + m->partition] = 1;
            } else if (m->err) {
                snprintf(last_err, sizeof last_err, "%s", rd_kafka_message_errstr(m));
                if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
                    rd_kafka_message_destroy(m);
                    return fail("consumer fatal error: %s", last_err);
                }
                fprintf(stderr, "# consumer error: %s\n", last_err);
            } else {
                eof[slot * NPART + m->partition] = 0;
                collect(c, m);
            }
            rd_kafka_message_destroy(m);
        }
        for (int i = 0; i < 64; i++)
            neof += eof[i];
        if (c->n >= expected && neof >= eof_parts)
            return 1;
    }
    return fail("timeout after %d ms: %d of %d messages%s%s", TIMEOUT_MS, c->n, expected,
                *last_err ? ", last error: " : "", last_err);
}

/* Check that c holds exactly "<prefix>-<i>" for i < n, each partition in produce order. */
static int check_order(const struct collected *c, const char *prefix, int n)
{
    int next[NPART];
    int64_t last_off[NPART];
    size_t plen = strlen(prefix);
    int seen = 0;

    for (int p = 0; p < NPART; p++) {
        next[p] = p;
        last_off[p] = -1;
    }
    for (int i = 0; i < c->n; i++) {
        const struct msg *m = &c->v[i];
        int idx;
        if (strncmp(m->value, prefix, plen) || m->value[plen] != '-')
            continue; /* another topic's message */
        idx = atoi(m->value + plen + 1);
        if (m->partition < 0 || m->partition >= NPART)
            return fail("%s: message in partition %d", prefix, m->partition);
        if (idx != next[m->partition])
            return fail("%s [%d]: got %s at offset %" PRId64 ", expected index %d", prefix,
                        m->partition, m->value, m->offset, next[m->partition]);
        if (m->offset <= last_off[m->partition])
            return fail("%s [%d]: offset %" PRId64 " after %" PRId64, prefix, m->partition,
                        m->offset, last_off[m->partition]);
        last_off[m->partition] = m->offset;
        next[m->partition] += NPART;
        seen++;
    }
    return seen == n ? 1 : fail("%s: %d of %d messages read back", prefix, seen, n);
}

/* Assign all NPART partitions of each topic from the beginning. */
static int assign_all(rd_kafka_t *rk, const char **topics, int ntopics)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(ntopics * NPART);
    rd_kafka_resp_err_t e;
    for (int t = 0; t < ntopics; t++)
        for (int p = 0; p < NPART; p++)
            rd_kafka_topic_partition_list_add(l, topics[t], p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    e = rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    return e ? fail("assign: %s", rd_kafka_err2str(e)) : 1;
}

/* Read topics with assign() under isolation level `iso` into c (expected messages, EOF on all). */
static int read_assigned(const char **topics, int ntopics, const char *iso, int expected,
                         struct collected *c)
{
    char group[64];
    const char *kv[] = {"group.id", group, "enable.partition.eof", "true",
                        "enable.auto.commit", "false", "isolation.level", iso, NULL};
    rd_kafka_t *rk;
    int okay;

    /* group.id is only a name here: assign() never joins the group. */
    snprintf(group, sizeof group, "compat-assign-%d", (int)getpid());
    if (!(rk = client(RD_KAFKA_CONSUMER, NULL, kv)))
        return 0;
    rd_kafka_poll_set_consumer(rk);
    okay = assign_all(rk, topics, ntopics) && consume(rk, c, expected, ntopics * NPART);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return okay;
}

/* 1: plain producer, delivery reports. */
static int check_plain(const char *topic, int n)
{
    /* One request in flight: without idempotence, a retried request would
     * otherwise land after later ones and break the order checks 3 and 4. */
    const char *kv[] = {"enable.idempotence", "false", "acks", "all",
                        "max.in.flight.requests.per.connection", "1", NULL};
    return produce_checked(topic, "plain", n, kv);
}

/* 2: idempotent producer. */
static int check_idempotent(const char *topic, int n)
{
    const char *kv[] = {"enable.idempotence", "true", NULL};
    return produce_checked(topic, "idem", n, kv);
}

/* 3: assign() consumer reads both topics back in order. */
static int check_assign(const char *plain, const char *idem, int n)
{
    const char *topics[] = {plain, idem};
    struct collected c = {0};
    int okay = read_assigned(topics, 2, "read_committed", 2 * n, &c) &&
               check_order(&c, "plain", n) && check_order(&c, "idem", n);
    if (okay && c.n != 2 * n)
        okay = fail("read %d messages, expected %d", c.n, 2 * n);
    collected_free(&c);
    return okay;
}

/* 4: consumer group: subscribe(), read everything, commit, check committed offsets. */
static int check_group(const char *topic, int n)
{
    char group[64];
    const char *kv[] = {"group.id", group, "auto.offset.reset", "earliest",
                        "enable.auto.commit", "false", "session.timeout.ms", "10000", NULL};
    rd_kafka_topic_partition_list_t *sub, *asg = NULL;
    struct collected c = {0};
    rd_kafka_t *rk;
    rd_kafka_resp_err_t e;
    int okay;

    snprintf(group, sizeof group, "compat-group-%d-%" PRId64, (int)getpid(), now_ms());
    if (!(rk = client(RD_KAFKA_CONSUMER, NULL, kv)))
        return 0;
    rd_kafka_poll_set_consumer(rk);
    sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
    e = rd_kafka_subscribe(rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    okay = e ? fail("subscribe: %s", rd_kafka_err2str(e)) : consume(rk, &c, n, 0);
    if (!okay && c.n == 0 && !strncmp(errbuf, "timeout", 7)) {
        char tmp[sizeof errbuf];
        snprintf(tmp, sizeof tmp, "%s", errbuf);
        fail("no message via the group (no assignment?): %s", tmp);
    }
    if (okay)
        okay = check_order(&c, "plain", n);
    if (okay && (e = rd_kafka_commit(rk, NULL, 0)))
        okay = fail("commit: %s", rd_kafka_err2str(e));
    if (okay && (e = rd_kafka_assignment(rk, &asg)))
        okay = fail("assignment: %s", rd_kafka_err2str(e));
    if (okay && asg->cnt != NPART)
        okay = fail("assigned %d partitions, expected %d", asg->cnt, NPART);
    if (okay && (e = rd_kafka_committed(rk, asg, TIMEOUT_MS)))
        okay = fail("committed: %s", rd_kafka_err2str(e));
    if (okay) {
        int64_t sum = 0;
        for (int i = 0; i < asg->cnt; i++)
            sum += asg->elems[i].offset; /* one topic of n messages from offset 0 */
        if (sum != n)
            okay = fail("committed offsets add up to %" PRId64 ", expected %d", sum, n);
    }
    if (asg)
        rd_kafka_topic_partition_list_destroy(asg);
    e = rd_kafka_consumer_close(rk);
    if (okay && e)
        okay = fail("consumer_close (leave group): %s", rd_kafka_err2str(e));
    rd_kafka_destroy(rk);
    collected_free(&c);
    return okay;
}

/* Flush producer rk (all messages delivered) or fail. */
static int flushed(rd_kafka_t *rk)
{
    rd_kafka_resp_err_t e = rd_kafka_flush(rk, TIMEOUT_MS);
    return e ? fail("flush: %s", rd_kafka_err2str(e)) : 1;
}

/* Turn a transactional API error into a failure reason (consumes the error). */
static int txn_ok(const char *what, rd_kafka_error_t *err)
{
    if (!err)
        return 1;
    fail("%s: %s%s%s", what, rd_kafka_error_string(err),
         rd_kafka_error_is_fatal(err) ? " (fatal)" : "",
         rd_kafka_error_txn_requires_abort(err) ? " (abortable)" : "");
    rd_kafka_error_destroy(err);
    return 0;
}

/* 5: transactions: commit, abort, commit; read_committed must skip the aborted batch. */
static int check_transactions(const char *topic, int m)
{
    char txid[64];
    const char *kv[] = {"transactional.id", txid, NULL};
    const char *topics[] = {topic};
    struct dr_stats st = {0};
    struct collected rc = {0}, ru = {0};
    rd_kafka_t *rk;
    int okay;

    snprintf(txid, sizeof txid, "compat-tx-%d", (int)getpid());
    if (!(rk = client(RD_KAFKA_PRODUCER, &st, kv)))
        return 0;
    okay = txn_ok("init_transactions", rd_kafka_init_transactions(rk, TIMEOUT_MS)) &&
           txn_ok("begin 1", rd_kafka_begin_transaction(rk)) &&
           produce_range(rk, topic, "commit", 0, m) &&
           txn_ok("commit 1", rd_kafka_commit_transaction(rk, TIMEOUT_MS)) &&
           txn_ok("begin 2", rd_kafka_begin_transaction(rk)) &&
           produce_range(rk, topic, "abort", 0, m) &&
           /* flush first: abort_transaction() purges what was not sent yet, and the aborted
            * messages must really be in the log for the read_committed check to mean something */
           flushed(rk) &&
           txn_ok("abort 2", rd_kafka_abort_transaction(rk, TIMEOUT_MS)) &&
           txn_ok("begin 3", rd_kafka_begin_transaction(rk)) &&
           produce_range(rk, topic, "commit", m, m) &&
           txn_ok("commit 3", rd_kafka_commit_transaction(rk, TIMEOUT_MS)) && no_fatal(rk);
    if (okay && (st.ok != 3 * m || st.failed))
        okay = fail("%d delivery reports ok, %d failed (%s), expected %d ok", st.ok, st.failed,
                    st.first_error, 3 * m);
    rd_kafka_destroy(rk);

    /* The last transaction is committed after the aborted one: once its messages are visible
     * and every partition is at EOF, an aborted message would have shown up already. */
    if (okay)
        okay = read_assigned(topics, 1, "read_committed", 2 * m, &rc) &&
               check_order(&rc, "commit", 2 * m);
    if (okay && rc.n != 2 * m)
        okay = fail("read_committed saw %d messages, expected %d (aborted ones leaked?)", rc.n,
                    2 * m);
    if (okay)
        okay = read_assigned(topics, 1, "read_uncommitted", 3 * m, &ru) &&
               check_order(&ru, "abort", m);
    if (okay && ru.n != 3 * m)
        okay = fail("read_uncommitted saw %d messages, expected %d", ru.n, 3 * m);
    collected_free(&rc);
    collected_free(&ru);
    return okay;
}

/* Print one TAP line for check number `num` and return 1 if it passed. */
static int report(int num, const char *name, int okay, int64_t started)
{
    if (okay)
        printf("ok %d - %s (%" PRId64 " ms)\n", num, name, now_ms() - started);
    else
        printf("not ok %d - %s: %s\n", num, name, errbuf);
    fflush(stdout);
    return okay;
}

int main(int argc, char **argv)
{
    char plain[96], idem[96], txn[96];
    const char *topics[3] = {plain, idem, txn};
    int n, failed = 0;
    int64_t t;

    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s BOOTSTRAP [N]\n", argv[0]);
        return 2;
    }
    bootstrap = argv[1];
    n = argc == 3 ? atoi(argv[2]) : 1000;
    if (n < NPART) {
        fprintf(stderr, "N must be at least %d\n", NPART);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("1..5\n");
    printf("# librdkafka %s, bootstrap %s, N=%d\n", rd_kafka_version_str(), bootstrap, n);
    snprintf(plain, sizeof plain, "compat-plain-%d-%" PRId64, (int)getpid(), now_ms());
    snprintf(idem, sizeof idem, "compat-idem-%d-%" PRId64, (int)getpid(), now_ms());
    snprintf(txn, sizeof txn, "compat-txn-%d-%" PRId64, (int)getpid(), now_ms());
    if (!create_topics(topics, 3)) {
        printf("Bail out! %s\n", errbuf);
        return 2;
    }

    t = now_ms();
    failed += !report(1, "plain produce, all delivery reports successful", check_plain(plain, n), t);
    t = now_ms();
    failed += !report(2, "idempotent produce + flush", check_idempotent(idem, n), t);
    t = now_ms();
    failed += !report(3, "assign() consumer: count and order per partition",
                      check_assign(plain, idem, n), t);
    t = now_ms();
    failed += !report(4, "consumer group subscribe(): count, order, commit", check_group(plain, n), t);
    t = now_ms();
    failed += !report(5, "transactions: commit/abort/commit, read_committed sees committed only",
                      check_transactions(txn, n / 2), t);
    printf("# %d of 5 checks failed\n", failed);
    return failed ? 1 : 0;
}
