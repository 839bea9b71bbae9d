/* store.c: the SQLite store (docs/store.md).
 *
 * Invariants: every write runs inside a transaction (the caller's vsoc_store_begin, or one of
 * its own) and takes the write lock up front (BEGIN IMMEDIATE), so that reading the audit
 * head and appending the next row cannot interleave with another process's writer. A call
 * made inside the caller's transaction runs in a savepoint, so a failing call leaves nothing
 * half-written behind. Upserts only touch a row whose content differs from the stored one
 * (ON CONFLICT ... DO UPDATE ... WHERE some column IS NOT the new value), and sqlite3_changes()
 * then tells whether anything changed: only then is an audit row written. Statements are
 * prepared once and cached on the handle; an iteration whose statement is already running
 * (a callback that iterates again) gets a private one. */
#include "store.h"

#include <openssl/evp.h>
#include <sqlite3.h>

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ZERO_HASH "0000000000000000000000000000000000000000000000000000000000000000"

/* ---- schema ------------------------------------------------------------------------------ */

/* migrations[i] takes a database from user_version i to i + 1. A new version is one more
 * entry (and VSOC_STORE_SCHEMA_VERSION one more); all pending entries run in one
 * transaction. */
static const char *const migrations[] = {
    /* 1: the first schema. */
    "CREATE TABLE alerts ("
    " uid TEXT PRIMARY KEY NOT NULL, rule_id TEXT NOT NULL, level INTEGER NOT NULL,"
    " vin TEXT NOT NULL, time_us INTEGER NOT NULL, json TEXT NOT NULL);"
    "CREATE INDEX alerts_vin_time ON alerts(vin, time_us);"
    "CREATE TABLE incidents ("
    " id TEXT PRIMARY KEY NOT NULL, vin TEXT NOT NULL, level INTEGER NOT NULL,"
    " state TEXT NOT NULL, first_us INTEGER NOT NULL, last_us INTEGER NOT NULL,"
    " alerts INTEGER NOT NULL, tactics INTEGER NOT NULL, first_rule TEXT NOT NULL,"
    " first_alert TEXT NOT NULL);"
    "CREATE INDEX incidents_vin_first ON incidents(vin, first_us);"
    "CREATE INDEX incidents_first ON incidents(first_us);"
    "CREATE TABLE incident_alerts ("
    " alert_uid TEXT PRIMARY KEY NOT NULL REFERENCES alerts(uid),"
    " incident_id TEXT NOT NULL REFERENCES incidents(id));"
    "CREATE INDEX incident_alerts_incident ON incident_alerts(incident_id);"
    "CREATE TABLE runs ("
    " id TEXT PRIMARY KEY NOT NULL, playbook TEXT NOT NULL, incident_id TEXT NOT NULL,"
    " vin TEXT NOT NULL, rule_id TEXT NOT NULL, state TEXT NOT NULL, step INTEGER NOT NULL,"
    " started_us INTEGER NOT NULL, updated_us INTEGER NOT NULL, reason TEXT NOT NULL);"
    "CREATE TABLE commands ("
    " cmd_id TEXT PRIMARY KEY NOT NULL, run_id TEXT NOT NULL REFERENCES runs(id),"
    " incident_id TEXT NOT NULL, playbook TEXT NOT NULL, step_id TEXT NOT NULL,"
    " vin TEXT NOT NULL, action TEXT NOT NULL, args TEXT NOT NULL, state TEXT NOT NULL,"
    " approval TEXT NOT NULL, napprovals INTEGER NOT NULL, approved_by1 TEXT NOT NULL,"
    " approved_by2 TEXT NOT NULL, seq INTEGER NOT NULL, attempts INTEGER NOT NULL,"
    " max_attempts INTEGER NOT NULL, ttl_s INTEGER NOT NULL, expires_s INTEGER NOT NULL,"
    " ack_timeout_s INTEGER NOT NULL, approval_timeout_s INTEGER NOT NULL,"
    " created_us INTEGER NOT NULL, updated_us INTEGER NOT NULL, deadline_us INTEGER NOT NULL,"
    " expires_at INTEGER NOT NULL, reason TEXT NOT NULL, envelope TEXT);"
    "CREATE INDEX commands_state ON commands(state);"
    "CREATE TABLE approvals ("
    " id INTEGER PRIMARY KEY, cmd_id TEXT NOT NULL REFERENCES commands(cmd_id),"
    " \"by\" TEXT NOT NULL, decision TEXT NOT NULL CHECK (decision IN ('approve','reject')),"
    " why TEXT NOT NULL, time_us INTEGER NOT NULL);"
    "CREATE TABLE acks ("
    " id INTEGER PRIMARY KEY, cmd_id TEXT NOT NULL, vin TEXT NOT NULL, seq INTEGER NOT NULL,"
    " status TEXT NOT NULL, reason TEXT NOT NULL, at INTEGER NOT NULL, key_id TEXT NOT NULL,"
    " raw TEXT NOT NULL, verdict TEXT NOT NULL, time_us INTEGER NOT NULL,"
    " UNIQUE (raw, verdict));"
    "CREATE INDEX acks_cmd ON acks(cmd_id);"
    "CREATE TABLE notifications ("
    " id TEXT PRIMARY KEY NOT NULL, run_id TEXT NOT NULL, incident_id TEXT NOT NULL,"
    " vin TEXT NOT NULL, action TEXT NOT NULL, args TEXT NOT NULL, message TEXT NOT NULL,"
    " time_us INTEGER NOT NULL);"
    "CREATE TABLE vehicles (vin TEXT PRIMARY KEY NOT NULL, last_seq INTEGER NOT NULL);"
    "CREATE TABLE audit ("
    " seq INTEGER PRIMARY KEY, time_us INTEGER NOT NULL, actor TEXT NOT NULL,"
    " event TEXT NOT NULL, subject TEXT NOT NULL, detail TEXT NOT NULL,"
    " prev_hash TEXT NOT NULL, hash TEXT NOT NULL);"
    /* A bug in vsoc cannot rewrite history; someone who drops these with the sqlite3 shell
     * can, and vsoc_store_audit_verify is what finds that. */
    "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN"
    " SELECT RAISE(ABORT, 'the audit log is append-only: its rows cannot be changed'); END;"
    "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN"
    " SELECT RAISE(ABORT, 'the audit log is append-only: its rows cannot be deleted'); END;",
    /* 2: the service's checkpoint: where each partition was read up to, and the engine
     * state of each vehicle as of then, written in the same transaction as what those
     * events produced (docs/serve.md, crash recovery). */
    "CREATE TABLE stream_offsets (topic TEXT NOT NULL, partition INTEGER NOT NULL,"
    " next_offset INTEGER NOT NULL, PRIMARY KEY (topic, partition));"
    "CREATE TABLE engine_state (vin BLOB PRIMARY KEY NOT NULL, topic TEXT NOT NULL,"
    " partition INTEGER NOT NULL, state BLOB NOT NULL, updated_us INTEGER NOT NULL);"
    "CREATE INDEX engine_state_partition ON engine_state (topic, partition);",
    /* 3: state of the service that belongs to no vehicle (the in-process fleet counter),
     * checkpointed in the same transaction as the offsets. */
    ("CREATE TABLE service_state (name TEXT PRIMARY KEY NOT NULL, state BLOB NOT NULL,"
     " updated_us INTEGER NOT NULL);"),
};

_Static_assert(sizeof migrations / sizeof *migrations == VSOC_STORE_SCHEMA_VERSION,
               "one migration per schema version");

/* Column lists: SELECTs read them in this order and the upserts are generated from them. */
#define INC_COLS "id,vin,level,state,first_us,last_us,alerts,tactics,first_rule,first_alert"
#define RUN_COLS "id,playbook,incident_id,vin,rule_id,state,step,started_us,updated_us,reason"
#define CMD_COLS                                                                           \
    "cmd_id,run_id,incident_id,playbook,step_id,vin,action,args,state,approval,napprovals," \
    "approved_by1,approved_by2,seq,attempts,max_attempts,ttl_s,expires_s,ack_timeout_s,"    \
    "approval_timeout_s,created_us,updated_us,deadline_us,expires_at,reason,envelope"
#define NOTE_COLS "id,run_id,incident_id,vin,action,args,message,time_us"

/* Cached statements. Entries with sql NULL are upserts built by build_upsert(). */
enum {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_SAVEPOINT,
    ST_RELEASE,
    ST_ROLLBACK_TO,
    ST_AUDIT_HEAD,
    ST_AUDIT_PUT,
    ST_ALERT_PUT,
    ST_INC_UPSERT,
    ST_INC_LINK,
    ST_RUN_UPSERT,
    ST_CMD_UPSERT,
    ST_NOTE_UPSERT,
    ST_SEQ_UP,
    ST_APPROVAL_PUT,
    ST_ACK_PUT,
    ST_INC_SET_STATE,
    ST_INC_SWAP_STATE,
    ST_CMD_STATE,
    ST_INC_GET,
    ST_CMD_GET,
    ST_EACH_APPROVAL,
    ST_EACH_RUN,
    ST_EACH_CMD,
    ST_EACH_CMD_OPEN,
    ST_EACH_SEQ,
    ST_EACH_LATEST_INC,
    ST_EACH_INC,
    ST_EACH_INC_ALERT,
    ST_EACH_AUDIT,
    ST_VERIFY,
    ST_OFFSET_PUT,
    ST_EACH_OFFSET,
    ST_STATE_PUT,
    ST_EACH_STATE,
    ST_STATE_DROP,
    ST_SERVICE_PUT,
    ST_SERVICE_GET,
    ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SAVEPOINT] = "SAVEPOINT vsoc_call",
    [ST_RELEASE] = "RELEASE vsoc_call",
    [ST_ROLLBACK_TO] = "ROLLBACK TO vsoc_call",
    [ST_AUDIT_HEAD] = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
    [ST_AUDIT_PUT] = "INSERT INTO audit(seq,time_us,actor,event,subject,detail,prev_hash,hash)"
                     " VALUES(?1,?2,?3,?4,?5,?6,?7,?8)",
    [ST_ALERT_PUT] = "INSERT OR IGNORE INTO alerts(uid,rule_id,level,vin,time_us,json)"
                     " VALUES(?1,?2,?3,?4,?5,?6)",
    [ST_INC_LINK] = "INSERT OR IGNORE INTO incident_alerts(alert_uid,incident_id) VALUES(?1,?2)",
    [ST_SEQ_UP] = "INSERT INTO vehicles(vin,last_seq) VALUES(?1,?2) ON CONFLICT(vin) DO UPDATE"
                  " SET last_seq=excluded.last_seq WHERE excluded.last_seq > last_seq",
    [ST_APPROVAL_PUT] = "INSERT INTO approvals(cmd_id,\"by\",decision,why,time_us)"
                        " VALUES(?1,?2,?3,?4,?5)",
    [ST_ACK_PUT] = "INSERT OR IGNORE INTO acks(cmd_id,vin,seq,status,reason,at,key_id,raw,"
                   "verdict,time_us) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)",
    [ST_INC_SET_STATE] = "UPDATE incidents SET state=?2 WHERE id=?1",
    [ST_INC_SWAP_STATE] = "UPDATE incidents SET state=?3 WHERE id=?1 AND state=?2",
    [ST_CMD_STATE] = "SELECT state FROM commands WHERE cmd_id=?1",
    /* Prefix lookups: ids in [prefix, prefix with its last byte + 1). */
    [ST_INC_GET] = "SELECT " INC_COLS " FROM incidents WHERE id >= ?1 AND id < ?2"
                   " ORDER BY id LIMIT 2",
    [ST_CMD_GET] = "SELECT " CMD_COLS " FROM commands WHERE cmd_id >= ?1 AND cmd_id < ?2"
                   " ORDER BY cmd_id LIMIT 2",
    [ST_EACH_APPROVAL] = "SELECT id,cmd_id,\"by\",decision,why,time_us FROM approvals"
                         " WHERE id > ?1 ORDER BY id",
    [ST_EACH_RUN] = "SELECT " RUN_COLS " FROM runs ORDER BY started_us, id",
    [ST_EACH_CMD] = "SELECT " CMD_COLS " FROM commands ORDER BY created_us, cmd_id",
    [ST_EACH_CMD_OPEN] = "SELECT " CMD_COLS " FROM commands WHERE state IN ('pending_approval',"
                         "'queued','sent','deferred','escalated') OR (state = 'acked' AND"
                         " action = 'quarantine') ORDER BY created_us, cmd_id",
    [ST_EACH_SEQ] = "SELECT vin, last_seq FROM vehicles ORDER BY vin",
    [ST_EACH_LATEST_INC] = "SELECT " INC_COLS " FROM incidents i WHERE id = (SELECT id FROM"
                           " incidents j WHERE j.vin = i.vin ORDER BY first_us DESC, id DESC"
                           " LIMIT 1) ORDER BY vin",
    [ST_EACH_INC] = "SELECT " INC_COLS " FROM incidents WHERE (?1 IS NULL OR state = ?1) AND"
                    " (?2 IS NULL OR vin = ?2) ORDER BY first_us DESC, id DESC",
    [ST_EACH_INC_ALERT] = "SELECT a.uid, a.rule_id, a.level, a.time_us, a.json FROM"
                          " incident_alerts m JOIN alerts a ON a.uid = m.alert_uid WHERE"
                          " m.incident_id = ?1 ORDER BY a.time_us, a.uid",
    [ST_EACH_AUDIT] = "SELECT seq,time_us,actor,event,subject,detail,hash FROM audit"
                      " ORDER BY seq",
    [ST_VERIFY] = "SELECT seq,time_us,actor,event,subject,detail,prev_hash,hash FROM audit"
                  " ORDER BY seq",
    [ST_OFFSET_PUT] = "INSERT INTO stream_offsets(topic,partition,next_offset) VALUES(?1,?2,?3)"
                      " ON CONFLICT(topic,partition) DO UPDATE SET next_offset=excluded.next_offset",
    [ST_EACH_OFFSET] = "SELECT topic,partition,next_offset FROM stream_offsets"
                       " ORDER BY topic,partition",
    [ST_STATE_PUT] = "INSERT INTO engine_state(vin,topic,partition,state,updated_us)"
                     " VALUES(?1,?2,?3,?4,?5) ON CONFLICT(vin) DO UPDATE SET"
                     " topic=excluded.topic, partition=excluded.partition,"
                     " state=excluded.state, updated_us=excluded.updated_us",
    [ST_EACH_STATE] = "SELECT vin,state FROM engine_state WHERE topic=?1 AND partition=?2"
                      " ORDER BY vin",
    [ST_STATE_DROP] = "DELETE FROM engine_state WHERE topic=?1 AND partition=?2",
    [ST_SERVICE_PUT] = "INSERT INTO service_state(name,state,updated_us) VALUES(?1,?2,?3)"
                       " ON CONFLICT(name) DO UPDATE SET state=excluded.state,"
                       " updated_us=excluded.updated_us",
    [ST_SERVICE_GET] = "SELECT state FROM service_state WHERE name=?1",
};

/* The generated upserts: table, key column, columns, and whether the last column keeps its
 * stored value when given NULL (a command's envelope). */
static const struct {
    int id;
    const char *table;
    const char *cols;
    int keep_last;
} upserts[] = {
    {ST_INC_UPSERT, "incidents", INC_COLS, 0},
    {ST_RUN_UPSERT, "runs", RUN_COLS, 0},
    {ST_CMD_UPSERT, "commands", CMD_COLS, 1},
    {ST_NOTE_UPSERT, "notifications", NOTE_COLS, 0},
};

struct vsoc_store {
    sqlite3 *db;
    char *path;
    int depth;                 /* vsoc_store_begin nesting */
    int doomed;                /* vsoc_store_rollback inside a nested begin */
    sqlite3_stmt *st[ST_COUNT];
    EVP_MD_CTX *md;
    char err[512];
};

/* ---- errors and statements --------------------------------------------------------------- */

static void set_err(vsoc_store_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(vsoc_store_t *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof s->err, fmt, ap);
    va_end(ap);
}

/* "path: SQLite's message"; returns VSOC_EIO. */
static int db_err(vsoc_store_t *s)
{
    set_err(s, "%s: %s", s->path, sqlite3_errmsg(s->db));
    return VSOC_EIO;
}

/* "col1,col2" -> "?1,?2" style lists, assignments and comparisons for one upsert. */
static char *build_upsert(const char *table, const char *cols, int keep_last)
{
    char names[64][32];
    size_t n = 0;
    for (const char *p = cols; *p && n < 64;) {
        size_t l = strcspn(p, ",");
        if (l >= sizeof names[0])
            return NULL;
        memcpy(names[n], p, l);
        names[n++][l] = 0;
        p += l;
        if (*p == ',')
            p++;
    }
    size_t cap = 4096;
    char *sql = malloc(cap);
    if (!sql)
        return NULL;
    size_t len = 0;
    /* Past the end (never with these tables), writes stop and len tells. */
#define ADD(...)                                                                           \
    len += (size_t)snprintf(sql + (len < cap ? len : cap - 1), len < cap ? cap - len : 0,   \
                            __VA_ARGS__)
    ADD("INSERT INTO %s(%s) VALUES(", table, cols);
    for (size_t i = 0; i < n; i++)
        ADD("%s?%zu", i ? "," : "", i + 1);
    ADD(") ON CONFLICT(%s) DO UPDATE SET ", names[0]);
    for (size_t i = 1; i < n; i++) {
        if (keep_last && i == n - 1)
            ADD("%s%s=coalesce(excluded.%s,%s)", i > 1 ? "," : "", names[i], names[i],
                names[i]);
        else
            ADD("%s%s=excluded.%s", i > 1 ? "," : "", names[i], names[i]);
    }
    ADD(" WHERE ");
    for (size_t i = 1; i < n; i++) {
        if (keep_last && i == n - 1)
            ADD("%s(excluded.%s IS NOT NULL AND excluded.%s IS NOT %s)", i > 1 ? " OR " : "",
                names[i], names[i], names[i]);
        else
            ADD("%s%s IS NOT excluded.%s", i > 1 ? " OR " : "", names[i], names[i]);
    }
#undef ADD
    if (len >= cap) {
        free(sql);
        return NULL;
    }
    return sql;
}

static sqlite3_stmt *prepare(vsoc_store_t *s, int id, int persistent)
{
    char *gen = NULL;
    const char *sql = stmt_sql[id];
    if (!sql) {
        for (size_t i = 0; i < sizeof upserts / sizeof *upserts; i++)
            if (upserts[i].id == id)
                sql = gen = build_upsert(upserts[i].table, upserts[i].cols, upserts[i].keep_last);
        if (!sql) {
            set_err(s, "%s: out of memory", s->path);
            return NULL;
        }
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v3(s->db, sql, -1, persistent ? SQLITE_PREPARE_PERSISTENT : 0, &st,
                           NULL) != SQLITE_OK) {
        db_err(s);
        st = NULL;
    }
    free(gen);
    return st;
}

/* The cached statement id, reset and ready to bind; NULL with the error on the handle. */
static sqlite3_stmt *stmt(vsoc_store_t *s, int id)
{
    if (!s->st[id])
        s->st[id] = prepare(s, id, 1);
    return s->st[id];
}

/* For iterations that call back into user code: the cached statement, or a private one
 * (*own set, finalize it) when the cached one is still stepping in an outer iteration. */
static sqlite3_stmt *iter_stmt(vsoc_store_t *s, int id, sqlite3_stmt **own)
{
    *own = NULL;
    sqlite3_stmt *st = stmt(s, id);
    if (st && sqlite3_stmt_busy(st))
        st = *own = prepare(s, id, 0);
    return st;
}

static void iter_done(sqlite3_stmt *st, sqlite3_stmt *own)
{
    if (own)
        sqlite3_finalize(own);
    else if (st)
        sqlite3_reset(st);
}

/* Runs a statement that returns no rows. Returns 0 or VSOC_EIO. */
static int run(vsoc_store_t *s, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    int ret = 0;
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        ret = db_err(s);
    sqlite3_reset(st);
    return ret;
}

static int run_id(vsoc_store_t *s, int id)
{
    sqlite3_stmt *st = stmt(s, id);
    return st ? run(s, st) : VSOC_EIO;
}

static int exec(vsoc_store_t *s, const char *sql)
{
    return sqlite3_exec(s->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : db_err(s);
}

/* Text bound as is (borrowed for the step); NULL becomes "" (columns are NOT NULL). */
static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
    sqlite3_bind_text(st, i, v ? v : "", -1, SQLITE_STATIC);
}

static void bind_i64(sqlite3_stmt *st, int i, int64_t v)
{
    sqlite3_bind_int64(st, i, (sqlite3_int64)v);
}

/* Binds a row's values from ?1 on, one per letter of types: 't' text (as bind_text), 'n'
 * text or SQL NULL, 'i' int, 'I' int64_t. The arguments are variadic: each 'I' one must be
 * an int64_t (cast it), each 'i' one an int. A row reads as one call in the order of its
 * columns, where a line per column hid which index went with which field. */
static void bind_row(sqlite3_stmt *st, const char *types, ...)
{
    va_list ap;
    va_start(ap, types);
    for (int i = 1; types[i - 1]; i++) {
        switch (types[i - 1]) {
        case 't': bind_text(st, i, va_arg(ap, const char *)); break;
        case 'n': {
            const char *v = va_arg(ap, const char *);
            if (v)
                bind_text(st, i, v);
            else
                sqlite3_bind_null(st, i);
            break;
        }
        case 'i': sqlite3_bind_int(st, i, va_arg(ap, int)); break;
        case 'I': bind_i64(st, i, va_arg(ap, int64_t)); break;
        }
    }
    va_end(ap);
}

/* run() for an upsert: sets *changed when it wrote a row (an unchanged one is left alone,
 * and then gets no audit row). */
static int run_changed(vsoc_store_t *s, sqlite3_stmt *st, int *changed)
{
    int rc = run(s, st);
    if (rc == 0 && sqlite3_changes(s->db) > 0)
        *changed = 1;
    return rc;
}

/* A text column into a fixed buffer (truncated to fit, as the struct's fields are). */
static void col_text(sqlite3_stmt *st, int i, char *dst, size_t n)
{
    const unsigned char *v = sqlite3_column_text(st, i);
    snprintf(dst, n, "%s", v ? (const char *)v : "");
}

static const char *col_str(sqlite3_stmt *st, int i)
{
    const unsigned char *v = sqlite3_column_text(st, i);
    return v ? (const char *)v : "";
}

/* ---- transactions ------------------------------------------------------------------------ */

/* Each writing call runs between call_begin and call_end: its own transaction outside the
 * caller's, a savepoint inside it (so that a failure undoes only this call). */
static int call_begin(vsoc_store_t *s)
{
    if (s->depth && s->doomed) {
        set_err(s, "%s: the transaction was rolled back; commit or roll back first", s->path);
        return VSOC_EIO;
    }
    return run_id(s, s->depth ? ST_SAVEPOINT : ST_BEGIN);
}

static int call_end(vsoc_store_t *s, int rc)
{
    if (rc >= 0) {
        int r = run_id(s, s->depth ? ST_RELEASE : ST_COMMIT);
        if (r == 0)
            return rc;
        rc = r;
    }
    /* Keep the first error's message: the rollback's own is not the news. */
    char keep[sizeof s->err];
    memcpy(keep, s->err, sizeof keep);
    if (s->depth && sqlite3_get_autocommit(s->db)) {
        /* Some errors (a full disk, I/O) make SQLite roll back the whole transaction: the
         * caller's group is gone, and its commit must say so. */
        s->doomed = 1;
    } else if (s->depth) {
        run_id(s, ST_ROLLBACK_TO);
        run_id(s, ST_RELEASE);
    } else if (!sqlite3_get_autocommit(s->db)) {
        run_id(s, ST_ROLLBACK);
    }
    memcpy(s->err, keep, sizeof keep);
    return rc;
}

int vsoc_store_begin(vsoc_store_t *s)
{
    if (s->depth == 0) {
        int rc = run_id(s, ST_BEGIN);
        if (rc)
            return rc;
        s->doomed = 0;
    }
    s->depth++;
    return 0;
}

int vsoc_store_commit(vsoc_store_t *s)
{
    if (s->depth == 0) {
        set_err(s, "%s: commit without begin", s->path);
        return VSOC_EINVAL;
    }
    if (--s->depth > 0)
        return 0;
    if (s->doomed) {
        s->doomed = 0;
        if (!sqlite3_get_autocommit(s->db))
            run_id(s, ST_ROLLBACK);
        set_err(s, "%s: the transaction was rolled back", s->path);
        return VSOC_EIO;
    }
    if (run_id(s, ST_COMMIT) != 0) {
        char keep[sizeof s->err];
        memcpy(keep, s->err, sizeof keep);
        if (!sqlite3_get_autocommit(s->db))
            run_id(s, ST_ROLLBACK);
        memcpy(s->err, keep, sizeof keep);
        return VSOC_EIO;
    }
    return 0;
}

int vsoc_store_rollback(vsoc_store_t *s)
{
    if (s->depth == 0) {
        set_err(s, "%s: rollback without begin", s->path);
        return VSOC_EINVAL;
    }
    s->doomed = 1;
    if (--s->depth > 0)
        return 0;
    s->doomed = 0;
    return sqlite3_get_autocommit(s->db) ? 0 : run_id(s, ST_ROLLBACK);
}

/* ---- audit ------------------------------------------------------------------------------- */

static void put_be(unsigned char *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

static int md_field(EVP_MD_CTX *md, const char *v)
{
    size_t n = strlen(v);
    unsigned char len[4];
    put_be(len, (uint64_t)n, 4);
    return EVP_DigestUpdate(md, len, 4) && EVP_DigestUpdate(md, v, n);
}

/* The row hash (docs/store.md, "Audit log"): SHA-256 over the tag "vsoc-audit-v1", seq and
 * time_us as 8-byte big-endian two's complement, then actor, event, subject, detail and
 * prev_hash each as a 4-byte big-endian length and its bytes. */
static int audit_hash(EVP_MD_CTX *md, int64_t seq, int64_t time_us, const char *actor,
                      const char *event, const char *subject, const char *detail,
                      const char *prev_hash, char out[65])
{
    static const char tag[] = "vsoc-audit-v1";
    unsigned char num[16], dig[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    put_be(num, (uint64_t)seq, 8);
    put_be(num + 8, (uint64_t)time_us, 8);
    if (!EVP_DigestInit_ex(md, EVP_sha256(), NULL) ||
        !EVP_DigestUpdate(md, tag, sizeof tag - 1) || !EVP_DigestUpdate(md, num, 16) ||
        !md_field(md, actor) || !md_field(md, event) || !md_field(md, subject) ||
        !md_field(md, detail) || !md_field(md, prev_hash) ||
        !EVP_DigestFinal_ex(md, dig, &dlen) || dlen != 32)
        return VSOC_EIO;
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < 32; i++) {
        out[2 * i] = hex[dig[i] >> 4];
        out[2 * i + 1] = hex[dig[i] & 15];
    }
    out[64] = 0;
    return 0;
}

int vsoc_store_audit_hash(int64_t seq, int64_t time_us, const char *actor, const char *event,
                          const char *subject, const char *detail, const char *prev_hash,
                          char out[65])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md)
        return VSOC_ENOMEM;
    int rc = audit_hash(md, seq, time_us, actor ? actor : "", event ? event : "",
                        subject ? subject : "", detail ? detail : "",
                        prev_hash ? prev_hash : "", out);
    EVP_MD_CTX_free(md);
    return rc;
}

/* Appends a row after the current head. Runs inside the caller's transaction. */
static int audit_append(vsoc_store_t *s, const char *actor, const char *event,
                        const char *subject, const char *detail, int64_t time_us)
{
    actor = actor ? actor : "";
    event = event ? event : "";
    subject = subject ? subject : "";
    detail = detail ? detail : "";
    sqlite3_stmt *st = stmt(s, ST_AUDIT_HEAD);
    if (!st)
        return VSOC_EIO;
    int64_t seq = 0;
    char prev[65] = ZERO_HASH;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        seq = sqlite3_column_int64(st, 0);
        col_text(st, 1, prev, sizeof prev);
    } else if (rc != SQLITE_DONE) {
        rc = db_err(s);
        sqlite3_reset(st);
        return rc;
    }
    sqlite3_reset(st);
    char hash[65];
    if (audit_hash(s->md, seq + 1, time_us, actor, event, subject, detail, prev, hash) != 0) {
        set_err(s, "%s: SHA-256 failed", s->path);
        return VSOC_EIO;
    }
    if (!(st = stmt(s, ST_AUDIT_PUT)))
        return VSOC_EIO;
    bind_i64(st, 1, seq + 1);
    bind_i64(st, 2, time_us);
    bind_text(st, 3, actor);
    bind_text(st, 4, event);
    bind_text(st, 5, subject);
    bind_text(st, 6, detail);
    bind_text(st, 7, prev);
    bind_text(st, 8, hash);
    return run(s, st);
}

int vsoc_store_audit(vsoc_store_t *s, const char *actor, const char *event,
                     const char *subject, const char *detail, int64_t time_us)
{
    int rc = call_begin(s);
    if (rc)
        return rc;
    return call_end(s, audit_append(s, actor, event, subject, detail, time_us));
}

/* ---- opening ----------------------------------------------------------------------------- */

static int pragma_int(vsoc_store_t *s, const char *sql, int *out)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return db_err(s);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int(st, 0);
    else
        *out = 0;
    int ret = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_err(s);
    sqlite3_finalize(st);
    return ret;
}

static int migrate(vsoc_store_t *s)
{
    const int latest = VSOC_STORE_SCHEMA_VERSION;
    int v, ntables;
    if (pragma_int(s, "PRAGMA user_version", &v) != 0)
        return VSOC_EIO;
    if (v > latest) {
        set_err(s, "%s: the store's schema version is %d, newer than this vsoc knows (%d): "
                   "use a newer vsoc",
                s->path, v, latest);
        return VSOC_EINVAL;
    }
    if (v == latest)
        return 0;
    if (exec(s, "BEGIN IMMEDIATE") != 0)
        return VSOC_EIO;
    /* Again under the write lock: another process may have migrated meanwhile. */
    if (pragma_int(s, "PRAGMA user_version", &v) != 0 ||
        pragma_int(s, "SELECT count(*) FROM sqlite_master", &ntables) != 0)
        goto fail;
    if (v == 0 && ntables > 0) {
        set_err(s, "%s: not a vsoc store (it has tables but no vsoc schema version)", s->path);
        goto fail;
    }
    for (; v < latest; v++)
        if (exec(s, migrations[v]) != 0)
            goto fail;
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version=%d", latest);
    if (exec(s, sql) != 0 || exec(s, "COMMIT") != 0)
        goto fail;
    return 0;
fail:;
    char keep[sizeof s->err];
    memcpy(keep, s->err, sizeof keep);
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    memcpy(s->err, keep, sizeof keep);
    return VSOC_EIO;
}

static vsoc_store_t *store_open(const char *path, int must_exist, char *err, size_t errlen)
{
    int memory = !strcmp(path, ":memory:");
    if (must_exist && !memory && access(path, F_OK) != 0) {
        snprintf(err, errlen, "%s: no such store", path);
        return NULL;
    }
    vsoc_store_t *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path)) || !(s->md = EVP_MD_CTX_new()))
        goto fail;
    int flags = SQLITE_OPEN_READWRITE | (must_exist ? 0 : SQLITE_OPEN_CREATE);
    if (sqlite3_open_v2(path, &s->db, flags, NULL) != SQLITE_OK) {
        if (s->db)
            db_err(s);
        goto fail;
    }
    sqlite3_extended_result_codes(s->db, 1);
    /* The CLI and a running service share the file: wait for the other's write lock. */
    sqlite3_busy_timeout(s->db, 5000);
    if (exec(s, "PRAGMA foreign_keys=ON") != 0 || exec(s, "PRAGMA journal_mode=WAL") != 0 ||
        exec(s, "PRAGMA synchronous=NORMAL") != 0 || migrate(s) != 0)
        goto fail;
    return s;
fail:
    if (s && s->err[0])
        snprintf(err, errlen, "%s", s->err);
    else
        snprintf(err, errlen, "%s: out of memory", path);
    vsoc_store_close(s);
    return NULL;
}

vsoc_store_t *vsoc_store_open(const char *path, char *err, size_t errlen)
{
    return store_open(path, 0, err, errlen);
}

vsoc_store_t *vsoc_store_open_existing(const char *path, char *err, size_t errlen)
{
    return store_open(path, 1, err, errlen);
}

void vsoc_store_close(vsoc_store_t *s)
{
    if (!s)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(s->st[i]);
    /* An unfinished vsoc_store_begin is rolled back by SQLite on close. */
    sqlite3_close_v2(s->db);
    EVP_MD_CTX_free(s->md);
    free(s->path);
    free(s);
}

const char *vsoc_store_errmsg(const vsoc_store_t *s)
{
    return s ? s->err : "no store";
}

/* ---- writing records --------------------------------------------------------------------- */

int vsoc_store_put_alert(vsoc_store_t *s, const char *uid, const char *rule_id,
                         vsoc_level_t level, const char *vin, int64_t time_us,
                         const char *json)
{
    if (!uid || !*uid) {
        set_err(s, "%s: an alert needs a uid", s->path);
        return VSOC_EINVAL;
    }
    int rc = call_begin(s);
    if (rc)
        return rc;
    sqlite3_stmt *st = stmt(s, ST_ALERT_PUT);
    if (!st)
        return call_end(s, VSOC_EIO);
    bind_row(st, "ttitIt", uid, rule_id, (int)level, vin, time_us, json);
    if ((rc = run(s, st)) != 0)
        return call_end(s, rc);
    if (sqlite3_changes(s->db) == 0)
        return call_end(s, 0);
    char detail[512];
    const char *ln = vsoc_level_name(level);
    snprintf(detail, sizeof detail, "rule %s, level %s, vin %s", rule_id ? rule_id : "",
             ln ? ln : "?", vin ? vin : "");
    rc = audit_append(s, "vsoc", "alert.raised", uid, detail, time_us);
    return call_end(s, rc ? rc : 1);
}

/* Binds an incident to an upsert or comparison in INC_COLS order, from ?1. */
static int bind_incident(vsoc_store_t *s, sqlite3_stmt *st, const vsoc_incident_t *inc)
{
    const char *state = vsoc_incident_state_name(inc->state);
    if (!state) {
        set_err(s, "%s: incident %s has an invalid state %d", s->path, inc->id, (int)inc->state);
        return VSOC_EINVAL;
    }
    bind_row(st, "ttitIIIItt", inc->id, inc->vin, (int)inc->level, state, inc->first_us,
             inc->last_us, (int64_t)inc->alerts, (int64_t)inc->tactics, inc->first_rule,
             inc->first_alert);
    return 0;
}

static int read_incident(vsoc_store_t *s, sqlite3_stmt *st, vsoc_incident_t *o)
{
    memset(o, 0, sizeof *o);
    col_text(st, 0, o->id, sizeof o->id);
    col_text(st, 1, o->vin, sizeof o->vin);
    o->level = (vsoc_level_t)sqlite3_column_int(st, 2);
    if (vsoc_incident_state_from_name(col_str(st, 3), &o->state) != 0) {
        set_err(s, "%s: incident %s has an unknown state '%s'", s->path, o->id, col_str(st, 3));
        return VSOC_EIO;
    }
    o->first_us = sqlite3_column_int64(st, 4);
    o->last_us = sqlite3_column_int64(st, 5);
    o->alerts = (uint64_t)sqlite3_column_int64(st, 6);
    o->tactics = (uint32_t)sqlite3_column_int64(st, 7);
    col_text(st, 8, o->first_rule, sizeof o->first_rule);
    col_text(st, 9, o->first_alert, sizeof o->first_alert);
    return 0;
}

int vsoc_store_put_incident(vsoc_store_t *s, const vsoc_incident_t *inc, const char *alert_uid,
                            const char *event, const char *actor, int64_t time_us)
{
    int rc = call_begin(s), changed = 0;
    if (rc)
        return rc;
    sqlite3_stmt *st = stmt(s, ST_INC_UPSERT);
    if (!st)
        return call_end(s, VSOC_EIO);
    if ((rc = bind_incident(s, st, inc)) != 0 || (rc = run(s, st)) != 0)
        return call_end(s, rc);
    changed = sqlite3_changes(s->db) > 0;
    if (alert_uid) {
        if (!(st = stmt(s, ST_INC_LINK)))
            return call_end(s, VSOC_EIO);
        bind_text(st, 1, alert_uid);
        bind_text(st, 2, inc->id);
        if ((rc = run(s, st)) != 0)
            return call_end(s, rc);
        changed |= sqlite3_changes(s->db) > 0;
    }
    if (changed) {
        char detail[512];
        const char *ln = vsoc_level_name(inc->level);
        int n = snprintf(detail, sizeof detail, "vin %s, level %s, state %s, %" PRIu64
                         " alert%s", inc->vin, ln ? ln : "?",
                         vsoc_incident_state_name(inc->state), inc->alerts,
                         inc->alerts == 1 ? "" : "s");
        if (alert_uid && n > 0 && (size_t)n < sizeof detail)
            snprintf(detail + n, sizeof detail - (size_t)n, "; alert %s", alert_uid);
        rc = audit_append(s, actor ? actor : "vsoc", event ? event : "incident.updated",
                          inc->id, detail, time_us);
    }
    return call_end(s, rc);
}

static int upsert_run(vsoc_store_t *s, const vsoc_run_t *r, int *changed)
{
    const char *state = vsoc_run_state_name(r->state);
    if (!state) {
        set_err(s, "%s: run %s has an invalid state %d", s->path, r->id, (int)r->state);
        return VSOC_EINVAL;
    }
    sqlite3_stmt *st = stmt(s, ST_RUN_UPSERT);
    if (!st)
        return VSOC_EIO;
    bind_row(st, "ttttttIIIt", r->id, r->playbook, r->incident_id, r->vin, r->rule_id, state,
             (int64_t)r->step, r->started_us, r->updated_us, r->reason);
    return run_changed(s, st, changed);
}

static int read_run(vsoc_store_t *s, sqlite3_stmt *st, vsoc_run_t *o)
{
    memset(o, 0, sizeof *o);
    col_text(st, 0, o->id, sizeof o->id);
    col_text(st, 1, o->playbook, sizeof o->playbook);
    col_text(st, 2, o->incident_id, sizeof o->incident_id);
    col_text(st, 3, o->vin, sizeof o->vin);
    col_text(st, 4, o->rule_id, sizeof o->rule_id);
    if (vsoc_run_state_from_name(col_str(st, 5), &o->state) != 0) {
        set_err(s, "%s: run %s has an unknown state '%s'", s->path, o->id, col_str(st, 5));
        return VSOC_EIO;
    }
    o->step = (uint32_t)sqlite3_column_int64(st, 6);
    o->started_us = sqlite3_column_int64(st, 7);
    o->updated_us = sqlite3_column_int64(st, 8);
    col_text(st, 9, o->reason, sizeof o->reason);
    return 0;
}

/* Approval modes as playbooks spell them. */
static const char *const approval_names[] = {"auto", "required", "two_person"};

static const char *approval_name(vsoc_approval_t a)
{
    return (unsigned)a < 3 ? approval_names[a] : NULL;
}

static int approval_from_name(const char *n, vsoc_approval_t *out)
{
    for (int i = 0; i < 3; i++)
        if (!strcmp(n, approval_names[i])) {
            *out = (vsoc_approval_t)i;
            return 0;
        }
    return -1;
}

static int upsert_command(vsoc_store_t *s, const vsoc_command_t *c, int *changed)
{
    const char *state = vsoc_cmd_state_name(c->state), *action = vsoc_action_name(c->action),
               *approval = approval_name(c->approval);
    if (!state || !action || !approval) {
        set_err(s, "%s: command %s has an invalid %s", s->path, c->cmd_id,
                !state ? "state" : !action ? "action" : "approval");
        return VSOC_EINVAL;
    }
    sqlite3_stmt *st = stmt(s, ST_CMD_UPSERT);
    if (!st)
        return VSOC_EIO;
    bind_row(st, "ttttttttttittIiiIIIIIIIItn", c->cmd_id, c->run_id, c->incident_id,
             c->playbook, c->step_id, c->vin, action, c->args, state, approval, c->napprovals,
             c->approved_by[0], c->approved_by[1], (int64_t)c->seq, c->attempts,
             c->max_attempts, c->ttl_s, c->expires_s, c->ack_timeout_s, c->approval_timeout_s,
             c->created_us, c->updated_us, c->deadline_us, c->expires_at, c->reason,
             c->envelope);
    return run_changed(s, st, changed);
}

/* The envelope pointer is set to the row's text: valid until the statement moves on. */
static int read_command(vsoc_store_t *s, sqlite3_stmt *st, vsoc_command_t *o)
{
    memset(o, 0, sizeof *o);
    col_text(st, 0, o->cmd_id, sizeof o->cmd_id);
    col_text(st, 1, o->run_id, sizeof o->run_id);
    col_text(st, 2, o->incident_id, sizeof o->incident_id);
    col_text(st, 3, o->playbook, sizeof o->playbook);
    col_text(st, 4, o->step_id, sizeof o->step_id);
    col_text(st, 5, o->vin, sizeof o->vin);
    const char *bad = NULL;
    if (vsoc_action_from_name(col_str(st, 6), &o->action) != 0)
        bad = "action";
    col_text(st, 7, o->args, sizeof o->args);
    if (vsoc_cmd_state_from_name(col_str(st, 8), &o->state) != 0)
        bad = "state";
    if (approval_from_name(col_str(st, 9), &o->approval) != 0)
        bad = "approval";
    if (bad) {
        set_err(s, "%s: command %s has an unknown %s", s->path, o->cmd_id, bad);
        return VSOC_EIO;
    }
    o->napprovals = sqlite3_column_int(st, 10);
    col_text(st, 11, o->approved_by[0], sizeof o->approved_by[0]);
    col_text(st, 12, o->approved_by[1], sizeof o->approved_by[1]);
    o->seq = (uint64_t)sqlite3_column_int64(st, 13);
    o->attempts = sqlite3_column_int(st, 14);
    o->max_attempts = sqlite3_column_int(st, 15);
    o->ttl_s = sqlite3_column_int64(st, 16);
    o->expires_s = sqlite3_column_int64(st, 17);
    o->ack_timeout_s = sqlite3_column_int64(st, 18);
    o->approval_timeout_s = sqlite3_column_int64(st, 19);
    o->created_us = sqlite3_column_int64(st, 20);
    o->updated_us = sqlite3_column_int64(st, 21);
    o->deadline_us = sqlite3_column_int64(st, 22);
    o->expires_at = sqlite3_column_int64(st, 23);
    col_text(st, 24, o->reason, sizeof o->reason);
    o->envelope = (const char *)sqlite3_column_text(st, 25);
    return 0;
}

static int upsert_note(vsoc_store_t *s, const vsoc_notification_t *n, int *changed)
{
    const char *action = vsoc_action_name(n->action);
    if (!action) {
        set_err(s, "%s: notification %s has an invalid action", s->path, n->id);
        return VSOC_EINVAL;
    }
    sqlite3_stmt *st = stmt(s, ST_NOTE_UPSERT);
    if (!st)
        return VSOC_EIO;
    bind_row(st, "tttttttI", n->id, n->run_id, n->incident_id, n->vin, action, n->args,
             n->message, n->time_us);
    return run_changed(s, st, changed);
}

static int seq_forward(vsoc_store_t *s, const char *vin, uint64_t seq, int *changed)
{
    sqlite3_stmt *st = stmt(s, ST_SEQ_UP);
    if (!st)
        return VSOC_EIO;
    bind_row(st, "tI", vin, (int64_t)seq);
    return run_changed(s, st, changed);
}

/* Refuses to move a command out of a final state: a process working from a stale copy
 * (two people deciding at once, a responder restored before a rejection) must not bring a
 * rejected command back. The one way out is "applied" after a timeout: the vehicle did it. */
static int check_final(vsoc_store_t *s, const vsoc_command_t *c)
{
    sqlite3_stmt *st = stmt(s, ST_CMD_STATE);
    if (!st)
        return VSOC_EIO;
    bind_text(st, 1, c->cmd_id);
    int rc = sqlite3_step(st);
    char was[32] = "";
    if (rc == SQLITE_ROW)
        col_text(st, 0, was, sizeof was);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_err(s);
    vsoc_cmd_state_t from;
    if (!was[0] || vsoc_cmd_state_from_name(was, &from) != 0 || from == c->state)
        return 0;
    int final = from == VSOC_CMD_REJECTED || from == VSOC_CMD_FAILED ||
                from == VSOC_CMD_RELEASED || from == VSOC_CMD_DRY_RUN ||
                (from == VSOC_CMD_TIMED_OUT && c->state != VSOC_CMD_ACKED);
    if (!final)
        return 0;
    set_err(s, "%s: command %.8s is %s already: it cannot become %s", s->path, c->cmd_id, was,
            vsoc_cmd_state_name(c->state));
    return VSOC_EINVAL;
}

/* An applied quarantine contains its incident; a lifted one opens it again. Written in the
 * command's transaction, whichever process (replay, vsoc respond) saw the ack. */
static int contain(vsoc_store_t *s, const vsoc_change_t *c)
{
    const vsoc_command_t *cmd = c->cmd;
    if (cmd->action != VSOC_ACTION_QUARANTINE ||
        (cmd->state != VSOC_CMD_ACKED && cmd->state != VSOC_CMD_RELEASED))
        return 0;
    int lift = cmd->state == VSOC_CMD_RELEASED;
    sqlite3_stmt *st = stmt(s, ST_INC_SWAP_STATE);
    if (!st)
        return VSOC_EIO;
    bind_text(st, 1, cmd->incident_id);
    bind_text(st, 2, lift ? "contained" : "open");
    bind_text(st, 3, lift ? "open" : "contained");
    int rc = run(s, st);
    if (rc != 0 || sqlite3_changes(s->db) == 0)
        return rc;
    char detail[160];
    snprintf(detail, sizeof detail, "quarantine %.8s %s", cmd->cmd_id,
             lift ? "lifted" : "applied");
    return audit_append(s, "vsoc", lift ? "incident.released" : "incident.contained",
                        cmd->incident_id, detail, c->time_us);
}

static int apply_change(vsoc_store_t *s, const vsoc_change_t *c)
{
    int changed = 0, rc = 0;
    const char *subject = NULL;
    switch (c->kind) {
    case VSOC_CHANGE_RUN:
        if (!c->run)
            break;
        subject = c->run->id;
        rc = upsert_run(s, c->run, &changed);
        break;
    case VSOC_CHANGE_COMMAND:
        if (!c->cmd)
            break;
        subject = c->cmd->cmd_id;
        if ((rc = check_final(s, c->cmd)) != 0)
            return rc;
        if (c->run && (rc = upsert_run(s, c->run, &changed)) != 0)
            return rc;
        if ((rc = upsert_command(s, c->cmd, &changed)) != 0)
            return rc;
        if (c->cmd->seq > 0)
            rc = seq_forward(s, c->cmd->vin, c->cmd->seq, &changed);
        break;
    case VSOC_CHANGE_NOTIFICATION:
        if (!c->note)
            break;
        subject = c->note->id;
        rc = upsert_note(s, c->note, &changed);
        break;
    }
    if (!subject) {
        set_err(s, "%s: a change of kind %d without its record", s->path, (int)c->kind);
        return VSOC_EINVAL;
    }
    if (rc == 0 && changed)
        rc = audit_append(s, c->actor ? c->actor : "vsoc", c->event ? c->event : "change",
                          subject, c->detail, c->time_us);
    if (rc == 0 && changed && c->kind == VSOC_CHANGE_COMMAND)
        rc = contain(s, c);
    return rc;
}

int vsoc_store_apply_change(vsoc_store_t *s, const vsoc_change_t *c)
{
    int rc = call_begin(s);
    if (rc)
        return rc;
    return call_end(s, apply_change(s, c));
}

int vsoc_store_add_approval(vsoc_store_t *s, const char *cmd_id, const char *by,
                            const char *decision, const char *why, int64_t time_us)
{
    if (!decision || (strcmp(decision, "approve") && strcmp(decision, "reject"))) {
        set_err(s, "%s: decision must be approve or reject, not '%s'", s->path,
                decision ? decision : "(null)");
        return VSOC_EINVAL;
    }
    if (!by || !*by || !cmd_id) {
        set_err(s, "%s: an approval needs a command and a name", s->path);
        return VSOC_EINVAL;
    }
    int rc = call_begin(s);
    if (rc)
        return rc;
    sqlite3_stmt *st = stmt(s, ST_APPROVAL_PUT);
    if (!st)
        return call_end(s, VSOC_EIO);
    bind_row(st, "ttttI", cmd_id, by, decision, why, time_us);
    if ((rc = run(s, st)) != 0)
        return call_end(s, rc);
    char event[32];
    snprintf(event, sizeof event, "approval.%s", decision);
    return call_end(s, audit_append(s, by, event, cmd_id, why, time_us));
}

int vsoc_store_each_approval(vsoc_store_t *s, int64_t after,
                             int (*fn)(void *ctx, int64_t rowid, const char *cmd_id,
                                       const char *by, const char *decision, const char *why,
                                       int64_t time_us),
                             void *ctx)
{
    sqlite3_stmt *own, *st = iter_stmt(s, ST_EACH_APPROVAL, &own);
    if (!st)
        return VSOC_EIO;
    bind_i64(st, 1, after);
    int rc, ret = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if ((ret = fn(ctx, sqlite3_column_int64(st, 0), col_str(st, 1), col_str(st, 2),
                      col_str(st, 3), col_str(st, 4), sqlite3_column_int64(st, 5))) != 0)
            break;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        ret = db_err(s);
    iter_done(st, own);
    return ret;
}

int vsoc_store_put_ack(vsoc_store_t *s, const vsoc_ack_t *ack, const char *raw,
                       const char *verdict, int64_t time_us)
{
    const char *status = vsoc_ack_status_name(ack->status);
    verdict = verdict ? verdict : "";
    int rc = call_begin(s);
    if (rc)
        return rc;
    sqlite3_stmt *st = stmt(s, ST_ACK_PUT);
    if (!st)
        return call_end(s, VSOC_EIO);
    bind_row(st, "ttIttItttI", ack->cmd_id, ack->vin, (int64_t)ack->seq,
             status ? status : "invalid", ack->reason, ack->at, ack->key_id, raw,
             verdict, time_us);
    if ((rc = run(s, st)) != 0)
        return call_end(s, rc);
    /* The same ack delivered twice is one fact. */
    if (sqlite3_changes(s->db) == 0)
        return call_end(s, 0);
    char event[48], detail[700];
    if (!strcmp(verdict, "ok"))
        snprintf(event, sizeof event, "ack.%s", status ? status : "invalid");
    else
        snprintf(event, sizeof event, "ack.refused");
    snprintf(detail, sizeof detail, "seq %" PRIu64 ", status %s%s%s, verdict %s", ack->seq,
             status ? status : "invalid", ack->reason[0] ? ", reason " : "", ack->reason,
             verdict);
    return call_end(s, audit_append(s, ack->vin, event, ack->cmd_id, detail, time_us));
}

/* ---- reading back ------------------------------------------------------------------------ */

int vsoc_store_each_run(vsoc_store_t *s, int (*fn)(void *ctx, const vsoc_run_t *run),
                        void *ctx)
{
    sqlite3_stmt *own, *st = iter_stmt(s, ST_EACH_RUN, &own);
    if (!st)
        return VSOC_EIO;
    int rc, ret = 0;
    vsoc_run_t r;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if ((ret = read_run(s, st, &r)) != 0 || (ret = fn(ctx, &r)) != 0)
            break;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        ret = db_err(s);
    iter_done(st, own);
    return ret;
}

int vsoc_store_each_command(vsoc_store_t *s, int open_only,
                            int (*fn)(void *ctx, const vsoc_command_t *cmd), void *ctx)
{
    sqlite3_stmt *own, *st = iter_stmt(s, open_only ? ST_EACH_CMD_OPEN : ST_EACH_CMD, &own);
    if (!st)
        return VSOC_EIO;
    vsoc_command_t *c = malloc(sizeof *c);
    if (!c) {
        iter_done(st, own);
        set_err(s, "%s: out of memory", s->path);
        return VSOC_ENOMEM;
    }
    int rc, ret = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if ((ret = read_command(s, st, c)) != 0 || (ret = fn(ctx, c)) != 0)
            break;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        ret = db_err(s);
    free(c);
    iter_done(st, own);
    return ret;
}

int vsoc_store_each_seq(vsoc_store_t *s,
                        int (*fn)(void *ctx, const char *vin, uint64_t last_seq), void *ctx)
{
    sqlite3_stmt *own, *st = iter_stmt(s, ST_EACH_SEQ, &own);
    if (!st)
        return VSOC_EIO;
    int rc, ret = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if ((ret = fn(ctx, col_str(st, 0), (uint64_t)sqlite3_column_int64(st, 1))) != 0)
            break;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        ret = db_err(s);
    iter_done(st, own);
    return ret;
}

static int each_incident_stmt(vsoc_store_t *s, sqlite3_stmt *st, sqlite3_stmt *own,
                              int (*fn)(void *ctx, const vsoc_incident_t *inc), void *ctx)
{
    int rc, ret = 0;
    vsoc_incident_t inc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if ((ret = read_incident(s, st, &inc)) != 0 || (ret = fn(ctx, &inc)) != 0)
            break;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        ret = db_err(s);
    iter_done(st, own);
    return ret;
}

int vsoc_store_each_latest_incident(vsoc_store_t *s,
                                    int (*fn)(void *ctx, const vsoc_incident_t *inc),
                                    void *ctx)
{
    sqlite3_stmt *own, *st = iter_stmt(s, ST_EACH_LATEST_INC, &own);
    return st ? each_incident_stmt(s, st, own, fn, ctx) : VSOC_EIO;
}

int vsoc_store_each_incident(vsoc_store_t *s, int state, const char *vin,
                             int (*fn)(void *ctx, const vsoc_incident_t *inc), void *ctx)
{
    const char *sn = NULL;
    if (state >= 0 && !(sn = vsoc_incident_state_name((vsoc_incident_state_t)state))) {
        set_err(s, "%s: invalid incident state %d", s->path, state);
        return VSOC_EINVAL;
    }
    sqlite3_stmt *own, *st = iter_stmt(s, ST_EACH_INC, &own);
    if (!st)
        return VSOC_EIO;
    if (sn)
        bind_text(st, 1, sn);
    else
        sqlite3_bind_null(st, 1);
    if (vin)
        bind_text(st, 2, vin);
    else
        sqlite3_bind_null(st, 2);
    return each_incident_stmt(s, st, own, fn, ctx);
}

int vsoc_store_each_incident_alert(vsoc_store_t *s, const char *incident_id,
                                   int (*fn)(void *ctx, const char *uid, const char *rule_id,
                                             vsoc_level_t level, int64_t time_us,
                                             const char *json),
                                   void *ctx)
{
    sqlite3_stmt *own, *st = iter_stmt(s, ST_EACH_INC_ALERT, &own);
    if (!st)
        return VSOC_EIO;
    bind_text(st, 1, incident_id);
    int rc, ret = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if ((ret = fn(ctx, col_str(st, 0), col_str(st, 1),
                      (vsoc_level_t)sqlite3_column_int(st, 2), sqlite3_column_int64(st, 3),
                      col_str(st, 4))) != 0)
            break;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        ret = db_err(s);
    iter_done(st, own);
    return ret;
}

/* Positions st (ST_INC_GET or ST_CMD_GET) on the one row whose id starts with id. Returns 0
 * (st on the row; the caller resets it), VSOC_ENOENT, VSOC_EINVAL or VSOC_EIO. */
static int lookup(vsoc_store_t *s, sqlite3_stmt *st, const char *id, const char *what)
{
    char lo[64], hi[64];
    size_t n = strlen(id);
    if (n < 8) {
        set_err(s, "%s id '%s' is too short: give at least 8 characters", what, id);
        return VSOC_EINVAL;
    }
    if (n >= sizeof lo) {
        set_err(s, "no %s '%s'", what, id);
        return VSOC_ENOENT;
    }
    /* Ids are lower-case hex; people may paste them in upper case. */
    for (size_t i = 0; i <= n; i++)
        lo[i] = (char)tolower((unsigned char)id[i]);
    memcpy(hi, lo, n + 1);
    if ((unsigned char)hi[n - 1] == 0xff) {
        set_err(s, "no %s '%s'", what, id);
        return VSOC_ENOENT;
    }
    hi[n - 1]++;
    sqlite3_bind_text(st, 1, lo, (int)n, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, hi, (int)n, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(st);
        set_err(s, "no %s '%s'", what, id);
        return VSOC_ENOENT;
    }
    if (rc != SQLITE_ROW) {
        rc = db_err(s);
        sqlite3_reset(st);
        return rc;
    }
    if (strcmp(col_str(st, 0), lo) == 0)
        return 0; /* the whole id */
    /* Is there a second match? Look, then go back to the first row. */
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW) {
        set_err(s, "%s id '%s' is ambiguous: several %ss start with it", what, id, what);
        return VSOC_EINVAL;
    }
    if (rc != SQLITE_DONE)
        return db_err(s);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        rc = rc == SQLITE_DONE ? VSOC_ENOENT : db_err(s);
        sqlite3_reset(st);
        return rc;
    }
    return 0;
}

int vsoc_store_get_incident(vsoc_store_t *s, const char *id, vsoc_incident_t *out)
{
    sqlite3_stmt *st = stmt(s, ST_INC_GET);
    if (!st)
        return VSOC_EIO;
    int rc = lookup(s, st, id, "incident");
    if (rc == 0)
        rc = read_incident(s, st, out);
    sqlite3_reset(st);
    return rc;
}

int vsoc_store_get_command(vsoc_store_t *s, const char *cmd_id, vsoc_command_t *out,
                           char **envelope)
{
    if (envelope)
        *envelope = NULL;
    sqlite3_stmt *st = stmt(s, ST_CMD_GET);
    if (!st)
        return VSOC_EIO;
    int rc = lookup(s, st, cmd_id, "command");
    if (rc == 0)
        rc = read_command(s, st, out);
    if (rc == 0 && envelope && out->envelope && !(*envelope = strdup(out->envelope))) {
        set_err(s, "%s: out of memory", s->path);
        rc = VSOC_ENOMEM;
    }
    out->envelope = NULL; /* the row's text goes with the reset */
    sqlite3_reset(st);
    return rc;
}

int vsoc_store_set_incident_state(vsoc_store_t *s, const char *id, vsoc_incident_state_t to,
                                  const char *by, const char *why, int64_t time_us)
{
    const char *to_name = vsoc_incident_state_name(to);
    if (!to_name) {
        set_err(s, "%s: invalid incident state %d", s->path, (int)to);
        return VSOC_EINVAL;
    }
    int rc = call_begin(s);
    if (rc)
        return rc;
    vsoc_incident_t inc;
    if ((rc = vsoc_store_get_incident(s, id, &inc)) != 0)
        return call_end(s, rc);
    if (!vsoc_incident_transition_ok(inc.state, to)) {
        set_err(s, "incident %.8s is %s: it cannot become %s", inc.id,
                vsoc_incident_state_name(inc.state), to_name);
        return call_end(s, VSOC_EINVAL);
    }
    sqlite3_stmt *st = stmt(s, ST_INC_SET_STATE);
    if (!st)
        return call_end(s, VSOC_EIO);
    bind_text(st, 1, inc.id);
    bind_text(st, 2, to_name);
    if ((rc = run(s, st)) != 0)
        return call_end(s, rc);
    char event[48];
    snprintf(event, sizeof event, "incident.%s", to == VSOC_INC_OPEN ? "reopened" : to_name);
    return call_end(s, audit_append(s, by, event, inc.id, why, time_us));
}

int vsoc_store_each_audit(vsoc_store_t *s,
                          int (*fn)(void *ctx, int64_t seq, int64_t time_us, const char *actor,
                                    const char *event, const char *subject,
                                    const char *detail, const char *hash),
                          void *ctx)
{
    sqlite3_stmt *own, *st = iter_stmt(s, ST_EACH_AUDIT, &own);
    if (!st)
        return VSOC_EIO;
    int rc, ret = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if ((ret = fn(ctx, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
                      col_str(st, 2), col_str(st, 3), col_str(st, 4), col_str(st, 5),
                      col_str(st, 6))) != 0)
            break;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        ret = db_err(s);
    iter_done(st, own);
    return ret;
}

/* ---- audit verification ------------------------------------------------------------------ */

static int is_hex64(const char *h)
{
    if (strlen(h) != 64)
        return 0;
    for (int i = 0; i < 64; i++)
        if (!isxdigit((unsigned char)h[i]))
            return 0;
    return 1;
}

int vsoc_store_audit_verify(vsoc_store_t *s, const char *expect_head, vsoc_audit_report_t *r)
{
    memset(r, 0, sizeof *r);
    char want[65] = "";
    if (expect_head) {
        if (!is_hex64(expect_head)) {
            set_err(s, "head '%s' is not a hex SHA-256 (64 hex digits)", expect_head);
            return VSOC_EINVAL;
        }
        for (int i = 0; i <= 64; i++)
            want[i] = (char)tolower((unsigned char)expect_head[i]);
    }
    int found = expect_head && !strcmp(want, ZERO_HASH); /* the head of an empty log */
    sqlite3_stmt *own, *st = iter_stmt(s, ST_VERIFY, &own);
    if (!st)
        return VSOC_EIO;
    char prev[65] = ZERO_HASH, hash[65];
    int64_t expected = 1;
    int rc, ret = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t seq = sqlite3_column_int64(st, 0);
        const char *stored_prev = col_str(st, 6), *stored = col_str(st, 7);
        r->rows++;
        if (seq < expected) {
            r->first_bad = expected;
            snprintf(r->problem, sizeof r->problem,
                     "a row with seq %" PRId64 " was inserted before row %" PRId64, seq,
                     expected);
            ret = 1;
            break;
        }
        if (seq > expected) {
            r->first_bad = expected;
            if (expected == 1 && seq == 2)
                snprintf(r->problem, sizeof r->problem,
                         "row 1 was deleted (the log starts at row 2)");
            else if (expected == 1)
                snprintf(r->problem, sizeof r->problem,
                         "rows 1..%" PRId64 " were deleted (the log starts at row %" PRId64 ")",
                         seq - 1, seq);
            else if (seq == expected + 1)
                snprintf(r->problem, sizeof r->problem,
                         "row %" PRId64 " was deleted (row %" PRId64 " follows row %" PRId64 ")",
                         expected, seq, expected - 1);
            else
                snprintf(r->problem, sizeof r->problem,
                         "rows %" PRId64 "..%" PRId64 " were deleted (row %" PRId64
                         " follows row %" PRId64 ")",
                         expected, seq - 1, seq, expected - 1);
            ret = 1;
            break;
        }
        if (strcmp(stored_prev, prev) != 0) {
            r->first_bad = seq;
            if (seq == 1)
                snprintf(r->problem, sizeof r->problem,
                         "row 1 was inserted: its prev_hash is not 64 zeros");
            else
                snprintf(r->problem, sizeof r->problem,
                         "row %" PRId64 " was inserted: its prev_hash is not the hash of row "
                         "%" PRId64 " (or row %" PRId64 " was changed and its hash rewritten)",
                         seq, seq - 1, seq - 1);
            ret = 1;
            break;
        }
        /* The hash covers text up to its length: a column of another type, or text with a
         * NUL inside (whose tail strlen would not see), cannot be what vsoc wrote. */
        int clean = sqlite3_column_type(st, 1) == SQLITE_INTEGER;
        for (int i = 2; i <= 7 && clean; i++)
            clean = sqlite3_column_type(st, i) == SQLITE_NULL ||
                    (sqlite3_column_type(st, i) == SQLITE_TEXT &&
                     strlen(col_str(st, i)) == (size_t)sqlite3_column_bytes(st, i));
        if (!clean) {
            r->first_bad = seq;
            snprintf(r->problem, sizeof r->problem,
                     "row %" PRId64 " was changed: a column holds a value vsoc never writes",
                     seq);
            ret = 1;
            break;
        }
        if (audit_hash(s->md, seq, sqlite3_column_int64(st, 1), col_str(st, 2), col_str(st, 3),
                       col_str(st, 4), col_str(st, 5), stored_prev, hash) != 0) {
            set_err(s, "%s: SHA-256 failed", s->path);
            ret = VSOC_EIO;
            break;
        }
        if (strcmp(hash, stored) != 0) {
            r->first_bad = seq;
            snprintf(r->problem, sizeof r->problem,
                     "row %" PRId64 " was changed: its hash does not match its content", seq);
            ret = 1;
            break;
        }
        snprintf(prev, sizeof prev, "%s", stored);
        if (expect_head && !strcmp(prev, want))
            found = 1;
        expected = seq + 1;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        ret = db_err(s);
    iter_done(st, own);
    if (ret)
        return ret;
    snprintf(r->head, sizeof r->head, "%s", prev);
    if (expect_head && !found) {
        r->first_bad = expected;
        snprintf(r->problem, sizeof r->problem,
                 "the log does not reach the recorded head %.16s...: rows from row %" PRId64
                 " on were deleted, or the log was rewritten",
                 want, expected);
        return 1;
    }
    return 0;
}

/* ---- the service's checkpoint ------------------------------------------------------------ */

int vsoc_store_put_offset(vsoc_store_t *s, const char *topic, int32_t partition,
                          int64_t next_offset)
{
    sqlite3_stmt *st = stmt(s, ST_OFFSET_PUT);
    if (!st)
        return VSOC_EIO;
    bind_row(st, "tiI", topic, (int)partition, next_offset);
    return run(s, st);
}

int vsoc_store_each_offset(vsoc_store_t *s,
                           int (*fn)(void *ctx, const char *topic, int32_t partition,
                                     int64_t next_offset),
                           void *ctx)
{
    sqlite3_stmt *own, *st = iter_stmt(s, ST_EACH_OFFSET, &own);
    if (!st)
        return VSOC_EIO;
    int rc, ret = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if ((ret = fn(ctx, col_str(st, 0), (int32_t)sqlite3_column_int(st, 1),
                      (int64_t)sqlite3_column_int64(st, 2))) != 0)
            break;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        ret = db_err(s);
    iter_done(st, own);
    return ret;
}

int vsoc_store_put_engine_state(vsoc_store_t *s, const char *vin, size_t vinlen,
                                const char *topic, int32_t partition, const void *state,
                                size_t n, int64_t time_us)
{
    sqlite3_stmt *st = stmt(s, ST_STATE_PUT);
    if (!st)
        return VSOC_EIO;
    /* The vin as a blob: it is the message key, whose bytes need not be text. */
    sqlite3_bind_blob(st, 1, vinlen ? vin : "", (int)vinlen, SQLITE_STATIC);
    bind_text(st, 2, topic);
    sqlite3_bind_int(st, 3, (int)partition);
    sqlite3_bind_blob(st, 4, n ? state : "", (int)n, SQLITE_STATIC);
    bind_i64(st, 5, time_us);
    return run(s, st);
}

int vsoc_store_each_engine_state(vsoc_store_t *s, const char *topic, int32_t partition,
                                 int (*fn)(void *ctx, const char *vin, size_t vinlen,
                                           const void *state, size_t n),
                                 void *ctx)
{
    sqlite3_stmt *own, *st = iter_stmt(s, ST_EACH_STATE, &own);
    if (!st)
        return VSOC_EIO;
    bind_text(st, 1, topic);
    sqlite3_bind_int(st, 2, (int)partition);
    int rc, ret = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const void *vin = sqlite3_column_blob(st, 0);
        size_t vinlen = (size_t)sqlite3_column_bytes(st, 0);
        const void *blob = sqlite3_column_blob(st, 1);
        size_t n = (size_t)sqlite3_column_bytes(st, 1);
        if ((ret = fn(ctx, vin ? vin : "", vinlen, blob ? blob : "", n)) != 0)
            break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        ret = db_err(s);
    iter_done(st, own);
    return ret;
}

int vsoc_store_drop_engine_state(vsoc_store_t *s, const char *topic, int32_t partition)
{
    sqlite3_stmt *st = stmt(s, ST_STATE_DROP);
    if (!st)
        return VSOC_EIO;
    bind_text(st, 1, topic);
    sqlite3_bind_int(st, 2, (int)partition);
    return run(s, st);
}

int vsoc_store_put_service_state(vsoc_store_t *s, const char *name, const void *state,
                                 size_t n, int64_t time_us)
{
    sqlite3_stmt *st = stmt(s, ST_SERVICE_PUT);
    if (!st)
        return VSOC_EIO;
    bind_text(st, 1, name);
    sqlite3_bind_blob(st, 2, n ? state : "", (int)n, SQLITE_STATIC);
    bind_i64(st, 3, time_us);
    return run(s, st);
}

int vsoc_store_get_service_state(vsoc_store_t *s, const char *name,
                                 int (*fn)(void *ctx, const void *state, size_t n), void *ctx)
{
    sqlite3_stmt *own, *st = iter_stmt(s, ST_SERVICE_GET, &own);
    if (!st)
        return VSOC_EIO;
    bind_text(st, 1, name);
    int rc = sqlite3_step(st), ret = 0;
    if (rc == SQLITE_ROW) {
        const void *blob = sqlite3_column_blob(st, 0);
        ret = fn(ctx, blob ? blob : "", (size_t)sqlite3_column_bytes(st, 0));
    } else if (rc != SQLITE_DONE) {
        ret = db_err(s);
    }
    iter_done(st, own);
    return ret;
}
