/* sh_kafka.c — topics, client configuration, error translation, reachability check. */
#include "sh_kafka.h"

#include "sh_log.h"

#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const sh_kafka_topic_def topics[] = {
    {SH_TOPIC_AUDIO_EVENTS, SH_TOPIC_AUDIO_EVENTS_PARTITIONS,
     "live audio events (upsert/delete) from upload services; key = track id"},
    {SH_TOPIC_AUDIO_REINDEX, SH_TOPIC_AUDIO_REINDEX_PARTITIONS,
     "reindex events from batch jobs; separate so live ingest never waits behind them"},
    {SH_TOPIC_AUDIO_DLQ, SH_TOPIC_AUDIO_DLQ_PARTITIONS, "dead-letter records of rejected events"},
    {SH_TOPIC_INDEX_DELTAS, SH_TOPIC_INDEX_DELTAS_PARTITIONS,
     "zstd index deltas from the replicator; partition = shard"},
};

const sh_kafka_topic_def *sh_kafka_topics(size_t *n)
{
    *n = sizeof topics / sizeof topics[0];
    return topics;
}

int sh_kafka_topic_partitions(const char *topic)
{
    for (size_t i = 0; i < sizeof topics / sizeof topics[0]; i++) {
        if (!strcmp(topics[i].name, topic))
            return topics[i].partitions;
    }
    return 0;
}

/* ---- quiet waits ------------------------------------------------------------------------------
 * While sh_kafka_wait_ready() waits for a cluster, librdkafka logs every failed connection attempt
 * as an error ("Connect to ... failed", "1/1 brokers are down"); the wait's own result says the
 * same in one line. So during a wait, and after a wait that failed (the caller is about to give up
 * or retry), a handle's warnings and errors are demoted to debug and the first one is kept for the
 * wait's error message. A handle made from a configuration marked with
 * sh_kafka_conf_quiet_until_ready() is quiet from its creation (its first connection attempt starts
 * inside rd_kafka_new(), before any wait). Once a wait succeeds, the handle logs normally.
 * Handles are told apart by pointer and name (rd_kafka_name() is unique within a process, so a new
 * handle at a freed address is never mistaken for an old one). */
enum { QUIET_SLOTS = 32, QUIET_NAME_MAX = 128, QUIET_MSG_MAX = 300 };

typedef struct quiet_slot {
    const rd_kafka_t *rk;
    char name[QUIET_NAME_MAX];
    bool ready;                /* a wait succeeded: log normally */
    bool have_fail;            /* `first` is a connection failure (the most telling kind) */
    char first[QUIET_MSG_MAX]; /* first demoted message, for the wait's error */
} quiet_slot;

static pthread_mutex_t quiet_mu = PTHREAD_MUTEX_INITIALIZER;
static quiet_slot quiet[QUIET_SLOTS];

/* Slot of `rk`; with `add`, a new quiet slot when it has none (NULL when all are taken: the
 * handle then simply logs as usual). Called with quiet_mu held. */
static quiet_slot *quiet_slot_of(const rd_kafka_t *rk, bool add)
{
    const char *name = rd_kafka_name(rk);
    quiet_slot *freeslot = NULL;
    for (size_t i = 0; i < QUIET_SLOTS; i++) {
        if (quiet[i].rk == rk && !strcmp(quiet[i].name, name))
            return &quiet[i];
        if (!quiet[i].rk && !freeslot)
            freeslot = &quiet[i];
    }
    if (!add || !freeslot)
        return NULL;
    memset(freeslot, 0, sizeof *freeslot);
    freeslot->rk = rk;
    snprintf(freeslot->name, sizeof freeslot->name, "%s", name);
    return freeslot;
}

static void quiet_begin(const rd_kafka_t *rk)
{
    pthread_mutex_lock(&quiet_mu);
    quiet_slot *q = quiet_slot_of(rk, true);
    if (q)
        q->ready = false;
    pthread_mutex_unlock(&quiet_mu);
}

/* Ends a wait: copies the first demoted message into `first`; when the cluster answered, the
 * handle logs normally again (its slot stays, marked ready: a quiet-from-birth handle would
 * otherwise be registered anew by its next log line). */
static void quiet_end(const rd_kafka_t *rk, bool answered, char *first, size_t cap)
{
    pthread_mutex_lock(&quiet_mu);
    quiet_slot *q = quiet_slot_of(rk, false);
    snprintf(first, cap, "%s", q ? q->first : "");
    if (q && answered) {
        q->ready = true;
        q->first[0] = '\0';
        q->have_fail = false;
    }
    pthread_mutex_unlock(&quiet_mu);
}

/* True when the message is to be demoted (and then records it). `from_birth`: register `rk` as
 * quiet when it is not known yet. */
static bool quiet_demote(const rd_kafka_t *rk, bool from_birth, const char *fac, const char *buf)
{
    pthread_mutex_lock(&quiet_mu);
    quiet_slot *q = quiet_slot_of(rk, from_birth);
    bool demote = q && !q->ready;
    if (demote) {
        bool fail = !strcmp(fac, "FAIL");
        if (!q->first[0] || (fail && !q->have_fail)) {
            /* Drop librdkafka's "[thrd:...]: " prefix: the text after it is the reason. */
            const char *t = buf[0] == '[' ? strstr(buf, "]: ") : NULL;
            snprintf(q->first, sizeof q->first, "%s", t ? t + 3 : buf);
            q->have_fail = fail;
        }
    }
    pthread_mutex_unlock(&quiet_mu);
    return demote;
}

static void log_line(const rd_kafka_t *rk, int level, const char *fac, const char *buf,
                     bool from_birth)
{
    char qfac[64], qmsg[512];
    int lvl = level <= 3 ? SH_LOG_ERROR : level == 4 ? SH_LOG_WARN : level <= 6 ? SH_LOG_INFO
                                                                                 : SH_LOG_DEBUG;
    if (lvl >= SH_LOG_WARN && quiet_demote(rk, from_birth, fac, buf))
        lvl = SH_LOG_DEBUG;
    sh_log(lvl, "kafka_log", "client=%s facility=%s msg=%s", rd_kafka_name(rk),
           sh_log_q(qfac, sizeof qfac, fac), sh_log_q(qmsg, sizeof qmsg, buf));
}

/* librdkafka logs from its own threads; sh_log writes one line atomically, so this is safe. */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    log_line(rk, level, fac, buf, false);
}

static void log_cb_until_ready(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    log_line(rk, level, fac, buf, true);
}

void sh_kafka_conf_quiet_until_ready(rd_kafka_conf_t *conf)
{
    rd_kafka_conf_set_log_cb(conf, log_cb_until_ready);
}

int sh_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, sh_err *e)
{
    char errstr[512];
    rd_kafka_conf_res_t r = rd_kafka_conf_set(conf, key, value, errstr, sizeof errstr);
    if (r == RD_KAFKA_CONF_OK)
        return 0;
    return sh_err_set(e, SH_EINVAL, "kafka property %s: %s", key, errstr);
}

int sh_kafka_conf_set_kv(rd_kafka_conf_t *conf, const char *kv, sh_err *e)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv)
        return sh_err_set(e, SH_EUSAGE, "-X '%s': expected key=value (a librdkafka property)", kv);
    char key[256];
    size_t klen = (size_t)(eq - kv);
    if (klen >= sizeof key)
        return sh_err_set(e, SH_EUSAGE, "-X: property name longer than %zu bytes", sizeof key - 1);
    memcpy(key, kv, klen);
    key[klen] = '\0';
    return sh_kafka_conf_set(conf, key, eq + 1, e);
}

/* SOUNDHASH_KAFKA_<KEY> with '.' → '_' and upper case. */
static void secret_env_name(const char *key, const char *suffix, char *buf, size_t len)
{
    size_t o = (size_t)snprintf(buf, len, "SOUNDHASH_KAFKA_");
    for (const char *p = key; *p && o + 1 < len; p++)
        buf[o++] = *p == '.' ? '_' : (char)toupper((unsigned char)*p);
    buf[o < len ? o : len - 1] = '\0';
    size_t cur = strlen(buf);
    snprintf(buf + cur, len - cur, "%s", suffix);
}

static void wipe_free(char *s)
{
    if (!s)
        return;
    volatile char *p = s;
    while (*p)
        *p++ = 0;
    free(s);
}

/* The secret properties (sasl.password, ...) from the environment: SOUNDHASH_KAFKA_<KEY>, else the
 * file named by SOUNDHASH_KAFKA_<KEY>_FILE. Applied before -X, so a -X still wins. */
static int set_env_secrets(rd_kafka_conf_t *conf, sh_err *e)
{
    for (const char *const *k = sh_kafka_secret_props(); *k; k++) {
        char name[96];
        secret_env_name(*k, "", name, sizeof name);
        const char *v = getenv(name);
        char *fromfile = NULL;
        if (!v || !*v) {
            secret_env_name(*k, "_FILE", name, sizeof name);
            const char *path = getenv(name);
            if (!path || !*path)
                continue;
            int rc = sh_secret_file_read(path, &fromfile, e);
            if (rc)
                return sh_err_wrap(e, rc, "%s", name);
            v = fromfile;
        }
        int rc = sh_kafka_conf_set(conf, *k, v, e);
        wipe_free(fromfile);
        if (rc)
            return sh_err_wrap(e, rc, "%s", name);
    }
    return 0;
}

int sh_kafka_conf_new(const char *bootstrap, const sh_strlist *props, rd_kafka_conf_t **out,
                      sh_err *e)
{
    *out = NULL;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!conf)
        return sh_err_set(e, SH_ENOMEM, "out of memory creating kafka configuration");
    rd_kafka_conf_set_log_cb(conf, log_cb);
    int rc = 0;
    if (bootstrap && *bootstrap)
        rc = sh_kafka_conf_set(conf, "bootstrap.servers", bootstrap, e);
    if (!rc)
        rc = set_env_secrets(conf, e);
    for (size_t i = 0; !rc && props && i < props->n; i++)
        rc = sh_kafka_conf_set_kv(conf, props->v[i], e);
    if (rc) {
        rd_kafka_conf_destroy(conf);
        return rc;
    }
    *out = conf;
    return 0;
}

int sh_kafka_errcode(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        return 0;
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
        return SH_ETIMEOUT;
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__RESOLVE:
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
    case RD_KAFKA_RESP_ERR__WAIT_COORD:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND:
    case RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION:
    case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
    case RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS:
        return SH_ETRANSIENT;
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__NOENT:
        return SH_ENOTFOUND;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
        return SH_ETOOBIG;
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR__INVALID_TYPE:
    case RD_KAFKA_RESP_ERR_INVALID_CONFIG:
    case RD_KAFKA_RESP_ERR_INVALID_PARTITIONS:
        return SH_EINVAL;
    case RD_KAFKA_RESP_ERR__NOT_IMPLEMENTED:
    case RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION:
        return SH_EUNSUPPORTED;
    case RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS:
        return SH_EEXIST;
    case RD_KAFKA_RESP_ERR__DESTROY:
        return SH_ECANCELED;
    default:
        return SH_EKAFKA;
    }
}

int sh_kafka_err_set(sh_err *e, rd_kafka_resp_err_t err, const char *fmt, ...)
{
    int code = sh_kafka_errcode(err);
    if (!code)
        return 0;
    if (e) {
        char what[SH_ERR_MSG_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof what, fmt, ap);
        va_end(ap);
        sh_err_set(e, code, "%s: %s", what, rd_kafka_err2str(err));
    }
    return code;
}

int sh_kafka_wait_ready(rd_kafka_t *rk, const char *bootstrap, int timeout_ms, sh_err *e)
{
    const struct rd_kafka_metadata *md = NULL;
    quiet_begin(rk);
    /* all_topics=0 with no topic asks only for brokers: the cheapest request that proves a broker
     * answers, and it never auto-creates a topic. */
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, NULL, &md, timeout_ms);
    if (md)
        rd_kafka_metadata_destroy(md);
    char first[QUIET_MSG_MAX];
    quiet_end(rk, !err, first, sizeof first);
    if (!err)
        return 0;
    int code = sh_kafka_errcode(err);
    if (code == SH_ETIMEOUT || code == SH_ETRANSIENT)
        return sh_err_set(e, SH_ETIMEOUT, "no Kafka broker reachable at %s within %d ms (%s%s%s)",
                          bootstrap ? bootstrap : "(bootstrap.servers)", timeout_ms,
                          rd_kafka_err2str(err), first[0] ? ": " : "", first);
    return sh_kafka_err_set(e, err, "kafka metadata request to %s",
                            bootstrap ? bootstrap : "(bootstrap.servers)");
}

int sh_kafka_describe_topic(rd_kafka_t *rk, const char *topic, int timeout_ms, int *partitions,
                            sh_err *e)
{
    const struct rd_kafka_metadata *md = NULL;
    *partitions = 0;
    /* all_topics=1 lists what exists; asking for one topic by handle could auto-create it. */
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, NULL, &md, timeout_ms);
    if (err)
        return sh_kafka_err_set(e, err, "kafka metadata request for topic %s", topic);
    for (int i = 0; i < md->topic_cnt; i++) {
        const struct rd_kafka_metadata_topic *t = &md->topics[i];
        if (!strcmp(t->topic, topic) && !t->err)
            *partitions = t->partition_cnt;
    }
    rd_kafka_metadata_destroy(md);
    return 0;
}

int sh_kafka_props_check(const char *bootstrap, const sh_strlist *props, sh_err *e)
{
    rd_kafka_conf_t *conf = NULL;
    int rc = sh_kafka_conf_new(bootstrap, props, &conf, e);
    if (conf)
        rd_kafka_conf_destroy(conf);
    if (rc == SH_EINVAL)
        return sh_opt_usage_error(e, "-X");
    return rc; /* SH_EUSAGE: the message names -X already */
}

/* ---- consumer lag ------------------------------------------------------------------------- */

/* A copy of parts with every offset set to `offset` (END/BEGINNING ask ListOffsets for the
 * latest/earliest; INVALID is what OffsetFetch fills). */
static rd_kafka_topic_partition_list_t *with_offsets(const rd_kafka_topic_partition_list_t *parts,
                                                     int64_t offset)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_copy(parts);
    for (int i = 0; i < l->cnt; i++)
        l->elems[i].offset = offset;
    return l;
}

int sh_kafka_group_lag(rd_kafka_t *consumer, rd_kafka_topic_partition_list_t *parts,
                       int timeout_ms, sh_err *e)
{
    rd_kafka_topic_partition_list_t *end = with_offsets(parts, RD_KAFKA_OFFSET_END);
    rd_kafka_topic_partition_list_t *start = with_offsets(parts, RD_KAFKA_OFFSET_BEGINNING);
    rd_kafka_topic_partition_list_t *done = with_offsets(parts, RD_KAFKA_OFFSET_INVALID);
    rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(consumer, end, timeout_ms);
    if (!err)
        err = rd_kafka_offsets_for_times(consumer, start, timeout_ms);
    if (!err)
        err = rd_kafka_committed(consumer, done, timeout_ms);
    /* The three lists keep parts' order: the calls fill entries in place. */
    for (int i = 0; !err && i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *en = &end->elems[i], *s = &start->elems[i],
                                         *c = &done->elems[i];
        int64_t from = c->offset >= 0 ? c->offset : s->offset;
        if (from < s->offset)
            from = s->offset; /* committed, then deleted by retention */
        bool ok = !en->err && !s->err && !c->err && en->offset >= 0 && s->offset >= 0;
        parts->elems[i].offset = ok ? (en->offset > from ? en->offset - from : 0) : -1;
    }
    rd_kafka_topic_partition_list_destroy(end);
    rd_kafka_topic_partition_list_destroy(start);
    rd_kafka_topic_partition_list_destroy(done);
    return err ? sh_kafka_err_set(e, err, "consumer lag") : 0;
}
