/*
 * orbit_fuse: Node-API binding to libfuse3's low-level (inode-based) API.
 *
 * Threads and ownership
 * ---------------------
 *  - A multi-threaded loop reads requests from /dev/fuse with libfuse's session API
 *    (fuse_session_receive_buf / fuse_session_process_buf, the calls fuse_session_loop_mt makes).
 *    It is ours rather than fuse_session_loop_mt because libfuse's loop reuses one receive buffer
 *    per thread, which would force a copy of every write: our workers receive into pooled buffers,
 *    and a large write's buffer is handed to JavaScript as the payload, uncopied, while the worker
 *    takes a fresh one. A FUSE thread never waits for JavaScript: it records what the request
 *    carries in a slot, queues the slot on a thread-safe function and goes back to reading.
 *  - The JS thread receives the slot (call_js), hands the request to the TypeScript session, and
 *    replies whenever the handler is done, in any order, by the slot's id.
 *  - A slot can be answered by exactly one of: the JS handler, the watchdog (request timeout) or the
 *    session teardown. Whoever takes it out of the in-flight list under g_lock replies; the others
 *    find it gone (its generation moved on) and do nothing. That makes late replies harmless.
 *  - A slot is recycled only after both its reply and its dispatch to JS are done (two references),
 *    so a timeout that fires before JS saw the request cannot hand JS a recycled slot.
 *  - Kernel notifications (invalidate inode / entry, delete) can block while the kernel holds locks
 *    that wait on one of our replies, so they run on a per-session notify thread, never on the JS thread.
 *
 * Numbers cross the boundary through one shared Float64Array ("scratch"): call_js writes a request's
 * numeric arguments into its first half before calling the dispatcher; reply functions read attributes
 * from its second half. Both happen synchronously on the JS thread, so one buffer serves all sessions.
 */
#define FUSE_USE_VERSION 312
#define _GNU_SOURCE
#include <fuse_lowlevel.h>
#include <node_api.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* Operation codes: must match src/fuse/ops.ts. */
enum {
  OP_INIT = 0, OP_DESTROY, OP_LOOKUP, OP_FORGET, OP_GETATTR, OP_SETATTR, OP_READLINK, OP_MKNOD,
  OP_MKDIR, OP_UNLINK, OP_RMDIR, OP_SYMLINK, OP_RENAME, OP_LINK, OP_OPEN, OP_READ, OP_WRITE,
  OP_FLUSH, OP_RELEASE, OP_FSYNC, OP_OPENDIR, OP_READDIR, OP_READDIRPLUS, OP_RELEASEDIR,
  OP_FSYNCDIR, OP_STATFS, OP_SETXATTR, OP_GETXATTR, OP_LISTXATTR, OP_REMOVEXATTR, OP_ACCESS,
  OP_CREATE, OP_FALLOCATE, OP_LSEEK, OP_COPY_FILE_RANGE,
  OP_COUNT,
  /* Events the session receives that are not kernel requests. */
  EV_TIMEOUT = 100, EV_CLOSED = 101, EV_NOTIFIED = 102,
};

/* Layout of the scratch Float64Array. */
#define REQ_BASE 0   /* [op, id, uid, gid, pid, umask, a0..a15] */
#define REQ_ARGS 6
#define MAX_ARGS 16
#define REPLY_BASE 32 /* entry/attr/statfs fields, see src/fuse/ops.ts */
#define SCRATCH_DOUBLES 64

/* Open-reply flag bits (JS → C). */
#define OPEN_DIRECT_IO 1
#define OPEN_KEEP_CACHE 2
#define OPEN_NONSEEKABLE 4
#define OPEN_CACHE_READDIR 8
#define OPEN_NOFLUSH 16

#define SLOTS_PER_PAGE 1024
#define MAX_PAGES 1024
#define GEN_SHIFT 20 /* id = gen * 2^20 + index; fits a double exactly while gen < 2^33 */

typedef struct session session_t;

typedef struct slot {
  uint32_t index;
  uint32_t gen;       /* bumped on every reuse; part of the id JS holds */
  uint8_t op;
  uint8_t refs;       /* reply + dispatch; slot is recycled at 0 */
  bool in_flight;     /* in its session's in-flight list, awaiting a reply */
  bool answered;      /* reply done (or not expected): call_js must not dispatch */
  fuse_req_t req;
  session_t *session;
  uint64_t deadline_ms;
  struct slot *prev, *next; /* in-flight list, oldest first */
  struct slot *free_next;
  double ctx[4];
  double args[MAX_ARGS];
  int nargs;
  char *s1, *s2;      /* names / link targets, malloc'd */
  void *data;         /* xattr value (malloc'd) or a write's receive buffer; ownership passes to JS */
  size_t data_len;
  size_t data_off;    /* where the payload starts in `data` (a receive buffer's header precedes it) */
  bool data_recv;     /* `data` is a pooled receive buffer */
} slot_t;

typedef enum { N_INVAL_INODE, N_INVAL_ENTRY, N_DELETE } notify_kind_t;

typedef struct notify_job {
  notify_kind_t kind;
  fuse_ino_t ino, child;
  off_t off, len;
  char *name;
  int result;
  napi_deferred deferred;
  struct notify_job *next;
} notify_job_t;

/* A queued item for call_js that is not a request: init, destroy, timeout, closed, notify done. */
typedef struct event {
  uint32_t magic; /* EVENT_MAGIC; a slot_t starts with its index, always < 2^30 */
  int kind;
  double a[8];
  int na;
  notify_job_t *job; /* notify completion */
} event_t;
#define EVENT_MAGIC 0xE7E7E7E7u

struct session {
  struct fuse_session *se;
  napi_threadsafe_function tsfn;
  char *mountpoint;
  /* options */
  uint32_t max_write, max_readahead, max_background, congestion_threshold, max_threads, time_gran;
  int writeback_cache, async_read, readdirplus, readdirplus_auto, atomic_o_trunc, parallel_dirops,
      cache_symlinks, explicit_inval_data, posix_acl, handle_killpriv, no_open, no_opendir;
  bool utf8_names;
  uint64_t timeout_ms;
  /* in-flight list, guarded by g_lock */
  slot_t *head, *tail;
  session_t *next_session;
  bool closing;
  int replying;       /* replies being written outside g_lock; teardown waits for 0 */
  int refs;           /* the JS external + the thread-safe function; freed at 0 */
  struct fuse_lowlevel_ops ops;
  bool debug;
  /* loop and notify threads */
  pthread_t loop_thread, notify_thread;
  bool loop_started;
  bool mount_tried;   /* a session mounts once */
  pthread_mutex_t notify_lock;
  pthread_cond_t notify_cond;
  notify_job_t *notify_head, *notify_tail;
  bool notify_stop;
  char last_error[256];
  /* inodes known to have no extended attributes (see "inodes without extended attributes") */
  uint64_t *no_xattrs;
  char *computed_xattrs; /* names under this prefix always go to JS; NULL: none */
  size_t computed_xattrs_len;
  char **xattr_namespaces; /* NULL-terminated prefixes of the names JS keeps; NULL: all names */
  uint64_t *clean_fhs;     /* handles that carried no write yet (see clean_fh_*); NULL: option off */
};

/* ---- global state ---- */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_watchdog_cond = PTHREAD_COND_INITIALIZER;
static pthread_cond_t g_replied_cond = PTHREAD_COND_INITIALIZER;
static slot_t *g_pages[MAX_PAGES];
static uint32_t g_page_count;
static slot_t *g_free;
static session_t *g_sessions;
static bool g_watchdog_started;
static double *g_scratch;          /* owned by a JS ArrayBuffer kept alive by g_scratch_ref */
static napi_ref g_scratch_ref;
static __thread char t_log[256];   /* last libfuse log message on this thread */
static __thread char *t_recv;      /* the receive buffer of the request this worker is processing */

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- inodes without extended attributes ----
 * ls -l asks for two attributes of every file (security.selinux, system.posix_acl_access) and the
 * kernel asks for security.capability before a file's first write; almost no inode has any. JS
 * marks the inodes it knows to have none when it hands them to the kernel (readdirplus, lookup,
 * create), and their getxattr is answered ENODATA here, on the FUSE thread, with no trip to JS.
 * A direct-mapped table of inode numbers, read and written with atomics: a collision only drops a
 * mark (the request then goes to JS, which knows), never makes one up. Marks go on setxattr and
 * removexattr (here, as they arrive, and by JS once they are done), on forget, and when JS says so.
 * Names under the session's computed prefix (attributes the filesystem derives) always go to JS. */
#define NO_XATTRS_BITS 17
#define NO_XATTRS_SLOTS (1u << NO_XATTRS_BITS)

static inline uint64_t *no_xattrs_slot(session_t *ss, uint64_t ino) {
  return &ss->no_xattrs[(ino * 0x9E3779B97F4A7C15ull) >> (64 - NO_XATTRS_BITS)];
}

static void no_xattrs_mark(session_t *ss, uint64_t ino) {
  if (ino) __atomic_store_n(no_xattrs_slot(ss, ino), ino, __ATOMIC_RELEASE);
}

static void no_xattrs_unmark(session_t *ss, uint64_t ino) {
  uint64_t expected = ino;
  __atomic_compare_exchange_n(no_xattrs_slot(ss, ino), &expected, 0, false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
}

/* Whether the filesystem keeps attributes of this name at all (others are EOPNOTSUPP). */
static bool xattr_name_kept(session_t *ss, const char *name) {
  if (!ss->xattr_namespaces) return true;
  for (char **ns = ss->xattr_namespaces; *ns; ns++)
    if (strncmp(name, *ns, strlen(*ns)) == 0) return true;
  return false;
}

/* Answers EOPNOTSUPP for a name the filesystem does not keep; true when it did. */
static bool refuse_name(fuse_req_t req, session_t *ss, const char *name) {
  if (xattr_name_kept(ss, name)) return false;
  fuse_reply_err(req, EOPNOTSUPP);
  return true;
}

static bool no_xattrs_known(session_t *ss, uint64_t ino, const char *name) {
  if (__atomic_load_n(no_xattrs_slot(ss, ino), __ATOMIC_ACQUIRE) != ino) return false;
  return !ss->computed_xattrs || strncmp(name, ss->computed_xattrs, ss->computed_xattrs_len) != 0;
}

/* ---- flushes of handles that carried no write ----
 * With the session option flushWrittenOnly, the filesystem's flush commits only what was written,
 * so a flush of a handle that never carried a write has nothing to do: the close of every file
 * opened to be read, or created and closed empty. Those are answered here. A file handle is marked
 * as its open or create is answered (before the reply, so that no write through it can come
 * first) and unmarked as the first request that may change the file through it arrives (write,
 * setattr, fallocate, copy_file_range into it), and at release. The kernel sends a handle's flush
 * only after the writes it waits for were answered, so none is missed. Direct-mapped like the
 * xattr marks, by handle + 1 (0 is a free slot): a collision only drops a mark. */
#define CLEAN_FH_BITS 14
#define CLEAN_FH_SLOTS (1u << CLEAN_FH_BITS)

static inline uint64_t *clean_fh_slot(session_t *ss, uint64_t fh) {
  return &ss->clean_fhs[((fh + 1) * 0x9E3779B97F4A7C15ull) >> (64 - CLEAN_FH_BITS)];
}

static void clean_fh_mark(session_t *ss, uint64_t fh) {
  if (ss->clean_fhs) __atomic_store_n(clean_fh_slot(ss, fh), fh + 1, __ATOMIC_RELEASE);
}

static void clean_fh_unmark(session_t *ss, const struct fuse_file_info *fi) {
  if (!ss->clean_fhs || !fi) return;
  uint64_t expected = fi->fh + 1;
  __atomic_compare_exchange_n(clean_fh_slot(ss, fi->fh), &expected, 0, false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
}

static bool clean_fh_known(session_t *ss, const struct fuse_file_info *fi) {
  return ss->clean_fhs && fi && __atomic_load_n(clean_fh_slot(ss, fi->fh), __ATOMIC_ACQUIRE) == fi->fh + 1;
}

/* ---- receive buffer pool ----
 * Each worker receives requests into a buffer of libfuse's largest request size. A write's
 * payload is handed to JavaScript inside that buffer, uncopied, and the worker takes another.
 * The session detaches the payload once the write's handler has settled, which frees the Buffer's
 * backing store at once, and its finalizer brings the receive buffer back here, still warm (fresh
 * memory costs a page fault per 4 KiB). The watchdog gives idle buffers back after a quiet spell. */
#define POOL_IDLE_BYTES (64u << 20)
#define POOL_IDLE_MS 10000

typedef struct pooled { struct pooled *next; } pooled_t;
static pthread_mutex_t g_pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pooled_t *g_pool;
static size_t g_pool_idle;
static uint64_t g_pool_used_ms;
static size_t g_recv_size; /* libfuse's session buffer size: 256 pages + one page of header */

static void *recv_alloc(void) {
  pthread_mutex_lock(&g_pool_lock);
  pooled_t *p = g_pool;
  if (p) {
    g_pool = p->next;
    g_pool_idle--;
  }
  g_pool_used_ms = now_ms();
  pthread_mutex_unlock(&g_pool_lock);
  return p ? (void *)p : malloc(g_recv_size);
}

static void recv_free(void *buf) {
  pthread_mutex_lock(&g_pool_lock);
  if ((g_pool_idle + 1) * g_recv_size <= POOL_IDLE_BYTES) {
    pooled_t *p = buf;
    p->next = g_pool;
    g_pool = p;
    g_pool_idle++;
    buf = NULL;
  }
  pthread_mutex_unlock(&g_pool_lock);
  free(buf);
}

/* Called by the watchdog: after a quiet spell, idle buffers go back to the system. */
static void pool_trim_if_idle(uint64_t now) {
  pooled_t *drop = NULL;
  pthread_mutex_lock(&g_pool_lock);
  if (now - g_pool_used_ms > POOL_IDLE_MS) {
    drop = g_pool;
    g_pool = NULL;
    g_pool_idle = 0;
  }
  pthread_mutex_unlock(&g_pool_lock);
  while (drop) {
    pooled_t *next = drop->next;
    free(drop);
    drop = next;
  }
}

static void log_to_thread(enum fuse_log_level level, const char *fmt, va_list ap) {
  (void)level;
  vsnprintf(t_log, sizeof t_log, fmt, ap);
  size_t n = strlen(t_log);
  while (n > 0 && (t_log[n - 1] == '\n' || t_log[n - 1] == '\r')) t_log[--n] = 0;
  /* Mount-time messages are returned with the error; runtime ones still deserve to be seen. */
  if (level <= FUSE_LOG_ERR) fprintf(stderr, "libfuse: %s\n", t_log);
}

/* ---- slots ---- */

static double slot_id(const slot_t *s) { return (double)s->gen * (double)(1u << GEN_SHIFT) + s->index; }

/* Caller holds g_lock. */
static slot_t *slot_alloc_locked(void) {
  if (!g_free) {
    if (g_page_count == MAX_PAGES) return NULL;
    slot_t *page = calloc(SLOTS_PER_PAGE, sizeof(slot_t));
    if (!page) return NULL;
    for (int i = SLOTS_PER_PAGE - 1; i >= 0; i--) {
      page[i].index = g_page_count * SLOTS_PER_PAGE + (uint32_t)i;
      page[i].free_next = g_free;
      g_free = &page[i];
    }
    g_pages[g_page_count++] = page;
  }
  slot_t *s = g_free;
  g_free = s->free_next;
  s->gen++;
  return s;
}

/* Caller holds g_lock. */
static void slot_unref_locked(slot_t *s) {
  if (--s->refs > 0) return;
  free(s->s1);
  free(s->s2);
  if (s->data) {
    if (s->data_recv) recv_free(s->data);
    else free(s->data);
  }
  s->s1 = s->s2 = NULL;
  s->data = NULL;
  s->data_len = 0;
  s->req = NULL;
  s->session = NULL;
  s->gen++; /* ids held by JS for this use no longer match */
  s->free_next = g_free;
  g_free = s;
}

static slot_t *slot_by_id(double id) {
  if (!(id >= 0)) return NULL;
  uint64_t v = (uint64_t)id;
  uint32_t index = (uint32_t)(v & ((1u << GEN_SHIFT) - 1));
  uint32_t gen = (uint32_t)(v >> GEN_SHIFT);
  uint32_t page = index / SLOTS_PER_PAGE;
  if (page >= g_page_count) return NULL;
  slot_t *s = &g_pages[page][index % SLOTS_PER_PAGE];
  return s->gen == gen ? s : NULL;
}

/* Caller holds g_lock. Takes the slot out of the in-flight list; the caller then owns the reply. */
static void unlink_in_flight_locked(slot_t *s) {
  session_t *ss = s->session;
  if (s->prev) s->prev->next = s->next; else ss->head = s->next;
  if (s->next) s->next->prev = s->prev; else ss->tail = s->prev;
  s->prev = s->next = NULL;
  s->in_flight = false;
  s->answered = true;
}

/* Claim a slot for replying from JS. Returns its request, or NULL if already answered. */
static fuse_req_t claim(double id, slot_t **out) {
  pthread_mutex_lock(&g_lock);
  slot_t *s = slot_by_id(id);
  if (!s || !s->in_flight) {
    pthread_mutex_unlock(&g_lock);
    return NULL;
  }
  unlink_in_flight_locked(s);
  s->session->replying++;
  fuse_req_t req = s->req;
  pthread_mutex_unlock(&g_lock);
  *out = s;
  return req;
}

/* After the reply is written: the session may now be torn down. */
static void release_claimed(slot_t *s) {
  pthread_mutex_lock(&g_lock);
  if (--s->session->replying == 0) pthread_cond_broadcast(&g_replied_cond);
  slot_unref_locked(s);
  pthread_mutex_unlock(&g_lock);
}

static void event_post(session_t *ss, int kind, const double *a, int na, notify_job_t *job) {
  event_t *ev = calloc(1, sizeof *ev);
  if (!ev) return;
  ev->magic = EVENT_MAGIC;
  ev->kind = kind;
  ev->na = na;
  for (int i = 0; i < na; i++) ev->a[i] = a[i];
  ev->job = job;
  if (napi_call_threadsafe_function(ss->tsfn, ev, napi_tsfn_nonblocking) != napi_ok) free(ev);
}

/* Timeout watchdog: one thread for all sessions. Each session's in-flight list is ordered by
 * arrival and all its slots share one timeout, so only list heads need looking at. */
static void *watchdog_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&g_lock);
  for (;;) {
    uint64_t now = now_ms();
    uint64_t next = now + 1000;
    for (session_t *ss = g_sessions; ss; ss = ss->next_session) {
      while (ss->head && ss->head->deadline_ms <= now) {
        slot_t *s = ss->head;
        unlink_in_flight_locked(s);
        ss->replying++;
        fuse_req_t req = s->req;
        double a[2] = {s->op, s->nargs > 0 ? s->args[0] : 0};
        slot_unref_locked(s);
        pthread_mutex_unlock(&g_lock);
        fuse_reply_err(req, EIO);
        event_post(ss, EV_TIMEOUT, a, 2, NULL);
        pthread_mutex_lock(&g_lock);
        if (--ss->replying == 0) pthread_cond_broadcast(&g_replied_cond);
        now = now_ms();
      }
      if (ss->head && ss->head->deadline_ms < next) next = ss->head->deadline_ms;
    }
    pthread_mutex_unlock(&g_lock);
    pool_trim_if_idle(now);
    pthread_mutex_lock(&g_lock);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t wait = next > now ? next - now : 1;
    if (wait > 1000) wait = 1000;
    ts.tv_sec += (time_t)(wait / 1000);
    ts.tv_nsec += (long)(wait % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
    pthread_cond_timedwait(&g_watchdog_cond, &g_lock, &ts);
  }
  return NULL;
}

/* ---- request intake (FUSE threads) ---- */

static bool valid_utf8(const char *p, size_t n) {
  const unsigned char *s = (const unsigned char *)p;
  size_t i = 0;
  while (i < n) {
    unsigned char c = s[i];
    if (c < 0x80) { i++; continue; }
    size_t len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
    else return false;
    if (i + len > n) return false;
    for (size_t k = 1; k < len; k++) {
      if ((s[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += len;
  }
  return true;
}

/* Start a request: a slot carrying the caller's context. Replies ENOMEM itself when out of slots. */
static slot_t *begin(fuse_req_t req, int op) {
  session_t *ss = fuse_req_userdata(req);
  pthread_mutex_lock(&g_lock);
  slot_t *s = slot_alloc_locked();
  pthread_mutex_unlock(&g_lock);
  if (!s) {
    fuse_reply_err(req, ENOMEM);
    return NULL;
  }
  const struct fuse_ctx *c = fuse_req_ctx(req);
  s->op = (uint8_t)op;
  s->req = req;
  s->session = ss;
  s->ctx[0] = c->uid;
  s->ctx[1] = c->gid;
  s->ctx[2] = c->pid;
  s->ctx[3] = c->umask;
  s->nargs = 0;
  s->answered = false;
  s->data_recv = false;
  s->data_off = 0;
  return s;
}

static inline void arg(slot_t *s, double v) { s->args[s->nargs++] = v; }

/* Copy a name out of libfuse's receive buffer (it is reused as soon as the callback returns). */
static bool take_name(slot_t *s, char **dst, const char *name) {
  size_t n = strlen(name);
  if (s->session->utf8_names && !valid_utf8(name, n)) return false;
  *dst = malloc(n + 1);
  if (!*dst) return false;
  memcpy(*dst, name, n + 1);
  return true;
}

/* Abandon a slot that was never queued, replying err. */
static void abandon(slot_t *s, int err) {
  fuse_req_t req = s->req;
  pthread_mutex_lock(&g_lock);
  s->refs = 1;
  slot_unref_locked(s);
  pthread_mutex_unlock(&g_lock);
  fuse_reply_err(req, err);
}

/* Queue a slot for JS. expects_reply: false for forget, whose reply libfuse needs at once. */
static void submit(slot_t *s, bool expects_reply) {
  session_t *ss = s->session;
  pthread_mutex_lock(&g_lock);
  if (expects_reply) {
    s->refs = 2;
    s->in_flight = true;
    s->deadline_ms = ss->timeout_ms ? now_ms() + ss->timeout_ms : UINT64_MAX;
    s->prev = ss->tail;
    s->next = NULL;
    if (ss->tail) ss->tail->next = s; else ss->head = s;
    ss->tail = s;
  } else {
    s->refs = 1;
    s->answered = true;
  }
  pthread_mutex_unlock(&g_lock);
  if (napi_call_threadsafe_function(ss->tsfn, s, napi_tsfn_nonblocking) != napi_ok) {
    /* The JS side is gone: answer here and drop the dispatch reference. */
    fuse_req_t req = NULL;
    pthread_mutex_lock(&g_lock);
    if (s->in_flight) {
      unlink_in_flight_locked(s);
      req = s->req;
      slot_unref_locked(s);
    }
    slot_unref_locked(s);
    pthread_mutex_unlock(&g_lock);
    if (req) fuse_reply_err(req, ENODEV);
  }
}

#define BEGIN(op)                  \
  slot_t *s = begin(req, op);      \
  if (!s) return
#define NAME(dst, name)                        \
  if (!take_name(s, &s->dst, name)) {           \
    abandon(s, s->session->utf8_names ? EILSEQ : ENOMEM); \
    return;                                     \
  }
#define FH(fi) ((fi) ? (double)(fi)->fh : -1.0)

static void op_init(void *userdata, struct fuse_conn_info *conn) {
  session_t *ss = userdata;
#define WANT(flag, on)                               \
  do {                                               \
    if ((on) > 0 && (conn->capable & (flag))) conn->want |= (flag); \
    else if ((on) == 0) conn->want &= ~(flag);       \
  } while (0)
  WANT(FUSE_CAP_WRITEBACK_CACHE, ss->writeback_cache);
  WANT(FUSE_CAP_ASYNC_READ, ss->async_read);
  WANT(FUSE_CAP_READDIRPLUS, ss->readdirplus);
  WANT(FUSE_CAP_READDIRPLUS_AUTO, ss->readdirplus_auto);
  WANT(FUSE_CAP_ATOMIC_O_TRUNC, ss->atomic_o_trunc);
  WANT(FUSE_CAP_PARALLEL_DIROPS, ss->parallel_dirops);
  WANT(FUSE_CAP_CACHE_SYMLINKS, ss->cache_symlinks);
  WANT(FUSE_CAP_EXPLICIT_INVAL_DATA, ss->explicit_inval_data);
  WANT(FUSE_CAP_POSIX_ACL, ss->posix_acl);
  WANT(FUSE_CAP_HANDLE_KILLPRIV, ss->handle_killpriv);
#undef WANT
  /* Splicing buys nothing when every byte is handed to JavaScript anyway. */
  conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
  if (ss->max_write) conn->max_write = ss->max_write;
  if (ss->max_readahead) conn->max_readahead = ss->max_readahead;
  if (ss->max_background) conn->max_background = ss->max_background;
  if (ss->congestion_threshold) conn->congestion_threshold = ss->congestion_threshold;
  if (ss->time_gran) conn->time_gran = ss->time_gran;

  double a[8] = {conn->proto_major, conn->proto_minor, conn->capable, conn->want,
                 conn->max_write, conn->max_readahead, conn->max_background, conn->time_gran};
  event_post(ss, OP_INIT, a, 8, NULL);
}

static void op_destroy(void *userdata) { event_post(userdata, OP_DESTROY, NULL, 0, NULL); }

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  BEGIN(OP_LOOKUP);
  arg(s, parent);
  NAME(s1, name);
  submit(s, true);
}

/* Forgets need no answer from JS: reply at once so the kernel is never held up, then tell JS. */
static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  no_xattrs_unmark(fuse_req_userdata(req), ino);
  BEGIN(OP_FORGET);
  fuse_reply_none(req);
  s->req = NULL;
  arg(s, ino);
  arg(s, (double)nlookup);
  submit(s, false);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets) {
  session_t *ss = fuse_req_userdata(req);
  for (size_t i = 0; i < count; i++) no_xattrs_unmark(ss, forgets[i].ino);
  BEGIN(OP_FORGET);
  fuse_reply_none(req);
  s->req = NULL;
  s->data = malloc(count * sizeof(struct fuse_forget_data));
  if (!s->data) { /* Lost forgets only keep inodes cached longer; never wrong. */
    pthread_mutex_lock(&g_lock);
    s->refs = 1;
    slot_unref_locked(s);
    pthread_mutex_unlock(&g_lock);
    return;
  }
  memcpy(s->data, forgets, count * sizeof(struct fuse_forget_data));
  s->data_len = count;
  submit(s, false);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  BEGIN(OP_GETATTR);
  arg(s, ino);
  arg(s, FH(fi));
  submit(s, true);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi) {
  clean_fh_unmark(fuse_req_userdata(req), fi);
  BEGIN(OP_SETATTR);
  arg(s, ino);
  arg(s, to_set);
  arg(s, attr->st_mode);
  arg(s, attr->st_uid);
  arg(s, attr->st_gid);
  arg(s, (double)attr->st_size);
  arg(s, (double)attr->st_atim.tv_sec);
  arg(s, (double)attr->st_atim.tv_nsec);
  arg(s, (double)attr->st_mtim.tv_sec);
  arg(s, (double)attr->st_mtim.tv_nsec);
  arg(s, (double)attr->st_ctim.tv_sec);
  arg(s, (double)attr->st_ctim.tv_nsec);
  arg(s, FH(fi));
  submit(s, true);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino) {
  BEGIN(OP_READLINK);
  arg(s, ino);
  submit(s, true);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev) {
  BEGIN(OP_MKNOD);
  arg(s, parent);
  arg(s, mode);
  arg(s, (double)rdev);
  NAME(s1, name);
  submit(s, true);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode) {
  BEGIN(OP_MKDIR);
  arg(s, parent);
  arg(s, mode);
  NAME(s1, name);
  submit(s, true);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name) {
  BEGIN(OP_UNLINK);
  arg(s, parent);
  NAME(s1, name);
  submit(s, true);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name) {
  BEGIN(OP_RMDIR);
  arg(s, parent);
  NAME(s1, name);
  submit(s, true);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name) {
  BEGIN(OP_SYMLINK);
  arg(s, parent);
  NAME(s1, name);
  NAME(s2, link);
  submit(s, true);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags) {
  BEGIN(OP_RENAME);
  arg(s, parent);
  arg(s, newparent);
  arg(s, flags);
  NAME(s1, name);
  NAME(s2, newname);
  submit(s, true);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname) {
  BEGIN(OP_LINK);
  arg(s, ino);
  arg(s, newparent);
  NAME(s1, newname);
  submit(s, true);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  BEGIN(OP_OPEN);
  arg(s, ino);
  arg(s, fi->flags);
  submit(s, true);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  BEGIN(OP_READ);
  arg(s, ino);
  arg(s, (double)size);
  arg(s, (double)off);
  arg(s, FH(fi));
  submit(s, true);
}

/* The payload is not copied: JavaScript gets the receive buffer it arrived in. */
static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi) {
  clean_fh_unmark(fuse_req_userdata(req), fi);
  BEGIN(OP_WRITE);
  arg(s, ino);
  arg(s, (double)off);
  arg(s, FH(fi));
  arg(s, fi->writepage);
  arg(s, fi->flags);
  if (t_recv && buf >= t_recv && buf + size <= t_recv + g_recv_size) {
    /* libfuse decoded the request in place: the payload lies in this worker's receive buffer. */
    s->data = t_recv;
    s->data_off = (size_t)(buf - t_recv);
    s->data_recv = true;
    t_recv = NULL; /* tells the worker to take a fresh buffer */
  } else {
    /* Not where we expect it (another libfuse, or a splice path): copy rather than guess. */
    s->data = malloc(size ? size : 1);
    if (!s->data) { abandon(s, ENOMEM); return; }
    memcpy(s->data, buf, size);
  }
  s->data_len = size;
  submit(s, true);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  if (clean_fh_known(fuse_req_userdata(req), fi)) {
    fuse_reply_err(req, 0);
    return;
  }
  BEGIN(OP_FLUSH);
  arg(s, ino);
  arg(s, FH(fi));
  submit(s, true);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  clean_fh_unmark(fuse_req_userdata(req), fi);
  BEGIN(OP_RELEASE);
  arg(s, ino);
  arg(s, FH(fi));
  arg(s, fi->flags);
  submit(s, true);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  BEGIN(OP_FSYNC);
  arg(s, ino);
  arg(s, datasync);
  arg(s, FH(fi));
  submit(s, true);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  BEGIN(OP_OPENDIR);
  arg(s, ino);
  arg(s, fi->flags);
  submit(s, true);
}

static void readdir_common(fuse_req_t req, int op, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi) {
  BEGIN(op);
  arg(s, ino);
  arg(s, (double)size);
  arg(s, (double)off);
  arg(s, FH(fi));
  submit(s, true);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  readdir_common(req, OP_READDIR, ino, size, off, fi);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  readdir_common(req, OP_READDIRPLUS, ino, size, off, fi);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  BEGIN(OP_RELEASEDIR);
  arg(s, ino);
  arg(s, FH(fi));
  submit(s, true);
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  BEGIN(OP_FSYNCDIR);
  arg(s, ino);
  arg(s, datasync);
  arg(s, FH(fi));
  submit(s, true);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino) {
  BEGIN(OP_STATFS);
  arg(s, ino);
  submit(s, true);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                        size_t size, int flags) {
  session_t *ss = fuse_req_userdata(req);
  if (refuse_name(req, ss, name)) return;
  no_xattrs_unmark(ss, ino);
  BEGIN(OP_SETXATTR);
  arg(s, ino);
  arg(s, flags);
  NAME(s1, name);
  s->data = malloc(size ? size : 1);
  if (!s->data) { abandon(s, ENOMEM); return; }
  memcpy(s->data, value, size);
  s->data_len = size;
  submit(s, true);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
  session_t *ss = fuse_req_userdata(req);
  if (refuse_name(req, ss, name)) return;
  if (no_xattrs_known(ss, ino, name)) {
    fuse_reply_err(req, ENODATA);
    return;
  }
  BEGIN(OP_GETXATTR);
  arg(s, ino);
  arg(s, (double)size);
  NAME(s1, name);
  submit(s, true);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  BEGIN(OP_LISTXATTR);
  arg(s, ino);
  arg(s, (double)size);
  submit(s, true);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name) {
  session_t *ss = fuse_req_userdata(req);
  if (refuse_name(req, ss, name)) return;
  no_xattrs_unmark(ss, ino);
  BEGIN(OP_REMOVEXATTR);
  arg(s, ino);
  NAME(s1, name);
  submit(s, true);
}

static void op_access(fuse_req_t req, fuse_ino_t ino, int mask) {
  BEGIN(OP_ACCESS);
  arg(s, ino);
  arg(s, mask);
  submit(s, true);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi) {
  BEGIN(OP_CREATE);
  arg(s, parent);
  arg(s, mode);
  arg(s, fi->flags);
  NAME(s1, name);
  submit(s, true);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                         struct fuse_file_info *fi) {
  clean_fh_unmark(fuse_req_userdata(req), fi);
  BEGIN(OP_FALLOCATE);
  arg(s, ino);
  arg(s, mode);
  arg(s, (double)offset);
  arg(s, (double)length);
  arg(s, FH(fi));
  submit(s, true);
}

static void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi) {
  BEGIN(OP_LSEEK);
  arg(s, ino);
  arg(s, (double)off);
  arg(s, whence);
  arg(s, FH(fi));
  submit(s, true);
}

static void op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
                               struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
                               struct fuse_file_info *fi_out, size_t len, int flags) {
  clean_fh_unmark(fuse_req_userdata(req), fi_out);
  BEGIN(OP_COPY_FILE_RANGE);
  arg(s, ino_in);
  arg(s, (double)off_in);
  arg(s, FH(fi_in));
  arg(s, ino_out);
  arg(s, (double)off_out);
  arg(s, FH(fi_out));
  arg(s, (double)len);
  arg(s, flags);
  submit(s, true);
}

/* ---- dispatch to JS (JS thread) ---- */

/* hint: the receive buffer holding the payload, or NULL for plain malloc'd bytes. */
static void free_payload(napi_env env, void *data, void *hint) {
  (void)env;
  if (hint) recv_free(hint);
  else free(data);
}

static napi_value make_string(napi_env env, session_t *ss, const char *str) {
  napi_value v;
  if (ss->utf8_names) napi_create_string_utf8(env, str, NAPI_AUTO_LENGTH, &v);
  else napi_create_string_latin1(env, str, NAPI_AUTO_LENGTH, &v);
  return v;
}

/* Hand the payload to JS without copying; its finalizer returns the memory. */
static napi_value take_payload(napi_env env, slot_t *s) {
  napi_value v;
  char *bytes = (char *)s->data + s->data_off;
  if (napi_create_external_buffer(env, s->data_len, bytes, free_payload, s->data_recv ? s->data : NULL, &v) != napi_ok) {
    napi_create_buffer_copy(env, s->data_len, bytes, NULL, &v);
    return v;
  }
  s->data = NULL;
  return v;
}

static void call_dispatch(napi_env env, napi_value fn, size_t argc, napi_value *argv) {
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  if (napi_call_function(env, undefined, fn, argc, argv, NULL) == napi_pending_exception) {
    /* The session's dispatcher catches everything; this is a last line of defence. */
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    fprintf(stderr, "orbit_fuse: dispatcher threw; request answered by timeout\n");
  }
}

static void handle_event(napi_env env, napi_value fn, event_t *ev) {
  if (ev->kind == EV_NOTIFIED) {
    notify_job_t *job = ev->job;
    if (env) {
      napi_value result;
      napi_create_int32(env, job->result, &result);
      napi_resolve_deferred(env, job->deferred, result);
    }
    free(job->name);
    free(job);
  } else if (env) {
    double *q = g_scratch + REQ_BASE;
    q[0] = ev->kind;
    q[1] = -1;
    q[2] = q[3] = q[4] = q[5] = 0;
    for (int i = 0; i < ev->na; i++) q[REQ_ARGS + i] = ev->a[i];
    call_dispatch(env, fn, 0, NULL);
  }
  free(ev);
}

static void call_js(napi_env env, napi_value fn, void *context, void *data) {
  (void)context;
  if (((event_t *)data)->magic == EVENT_MAGIC) {
    handle_event(env, fn, data);
    return;
  }
  slot_t *s = data;
  if (!env || !g_scratch) { /* tearing down: answer what is still waiting */
    fuse_req_t req = NULL;
    pthread_mutex_lock(&g_lock);
    if (s->in_flight) {
      unlink_in_flight_locked(s);
      req = s->req;
      slot_unref_locked(s);
    }
    slot_unref_locked(s);
    pthread_mutex_unlock(&g_lock);
    if (req) fuse_reply_err(req, ENODEV);
    return;
  }
  double *q = g_scratch + REQ_BASE;
  if (s->op == OP_FORGET && s->data) { /* batch forget */
    const struct fuse_forget_data *f = s->data;
    for (size_t i = 0; i < s->data_len; i++) {
      q[0] = OP_FORGET;
      q[1] = -1;
      q[REQ_ARGS] = (double)f[i].ino;
      q[REQ_ARGS + 1] = (double)f[i].nlookup;
      call_dispatch(env, fn, 0, NULL);
    }
  } else if (s->op == OP_FORGET || !s->answered) { /* not timed out before JS saw it */
    q[0] = s->op;
    q[1] = s->op == OP_FORGET ? -1 : slot_id(s);
    memcpy(q + 2, s->ctx, sizeof s->ctx);
    memcpy(q + REQ_ARGS, s->args, (size_t)s->nargs * sizeof(double));
    napi_value argv[3];
    size_t argc = 0;
    if (s->s1) argv[argc++] = make_string(env, s->session, s->s1);
    if (s->s2) argv[argc++] = make_string(env, s->session, s->s2);
    if (s->data) {
      if (argc == 0) napi_get_undefined(env, &argv[argc++]);
      if (argc == 1) napi_get_undefined(env, &argv[argc++]);
      argv[argc++] = take_payload(env, s);
    }
    call_dispatch(env, fn, argc, argv);
  }
  pthread_mutex_lock(&g_lock);
  slot_unref_locked(s);
  pthread_mutex_unlock(&g_lock);
}

/* ---- replies (JS thread) ---- */

#define ARGS(n)                                                  \
  size_t argc = n;                                               \
  napi_value argv[n];                                            \
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);          \
  double id = 0;                                                 \
  napi_get_value_double(env, argv[0], &id)

static napi_value js_bool(napi_env env, bool b) {
  napi_value v;
  napi_get_boolean(env, b, &v);
  return v;
}

static double num(napi_env env, napi_value v) {
  double d = 0;
  napi_get_value_double(env, v, &d);
  return d;
}

/* Claim the request or return false to JS: the request was already answered (timed out). */
#define CLAIM()                          \
  slot_t *slot;                          \
  fuse_req_t req = claim(id, &slot);     \
  if (!req) return js_bool(env, false)
#define DONE()              \
  release_claimed(slot);    \
  return js_bool(env, true)

static void read_attr(struct stat *st) {
  const double *r = g_scratch + REPLY_BASE;
  memset(st, 0, sizeof *st);
  st->st_ino = (ino_t)r[0];
  st->st_mode = (mode_t)r[4];
  st->st_nlink = (nlink_t)r[5];
  st->st_uid = (uid_t)r[6];
  st->st_gid = (gid_t)r[7];
  st->st_rdev = (dev_t)r[8];
  st->st_size = (off_t)r[9];
  st->st_blocks = (blkcnt_t)r[10];
  st->st_blksize = (blksize_t)r[11];
  st->st_atim.tv_sec = (time_t)r[12];
  st->st_atim.tv_nsec = (long)r[13];
  st->st_mtim.tv_sec = (time_t)r[14];
  st->st_mtim.tv_nsec = (long)r[15];
  st->st_ctim.tv_sec = (time_t)r[16];
  st->st_ctim.tv_nsec = (long)r[17];
}

static void read_entry(struct fuse_entry_param *e) {
  const double *r = g_scratch + REPLY_BASE;
  memset(e, 0, sizeof *e);
  e->ino = (fuse_ino_t)r[0];
  e->generation = (uint64_t)r[1];
  e->entry_timeout = r[2];
  e->attr_timeout = r[3];
  read_attr(&e->attr);
}

static void read_open_flags(struct fuse_file_info *fi, double fh, uint32_t bits) {
  memset(fi, 0, sizeof *fi);
  fi->fh = (uint64_t)fh;
  fi->direct_io = !!(bits & OPEN_DIRECT_IO);
  fi->keep_cache = !!(bits & OPEN_KEEP_CACHE);
  fi->nonseekable = !!(bits & OPEN_NONSEEKABLE);
  fi->cache_readdir = !!(bits & OPEN_CACHE_READDIR);
  fi->noflush = !!(bits & OPEN_NOFLUSH);
}

/* replyErr(id, errno): also the success reply (errno 0) of operations that return nothing. */
static napi_value js_reply_err(napi_env env, napi_callback_info info) {
  ARGS(2);
  CLAIM();
  fuse_reply_err(req, (int)num(env, argv[1]));
  DONE();
}

static napi_value js_reply_entry(napi_env env, napi_callback_info info) {
  ARGS(1);
  CLAIM();
  struct fuse_entry_param e;
  read_entry(&e);
  fuse_reply_entry(req, &e);
  DONE();
}

static napi_value js_reply_create(napi_env env, napi_callback_info info) {
  ARGS(3);
  CLAIM();
  struct fuse_entry_param e;
  struct fuse_file_info fi;
  read_entry(&e);
  read_open_flags(&fi, num(env, argv[1]), (uint32_t)num(env, argv[2]));
  clean_fh_mark(slot->session, fi.fh);
  fuse_reply_create(req, &e, &fi);
  DONE();
}

static napi_value js_reply_attr(napi_env env, napi_callback_info info) {
  ARGS(1);
  CLAIM();
  struct stat st;
  read_attr(&st);
  fuse_reply_attr(req, &st, g_scratch[REPLY_BASE + 3]);
  DONE();
}

static napi_value js_reply_open(napi_env env, napi_callback_info info) {
  ARGS(3);
  CLAIM();
  struct fuse_file_info fi;
  read_open_flags(&fi, num(env, argv[1]), (uint32_t)num(env, argv[2]));
  /* Not opendir's: directory handles may share numbers with files', and get no flush. */
  if (slot->op == OP_OPEN) clean_fh_mark(slot->session, fi.fh);
  fuse_reply_open(req, &fi);
  DONE();
}

static napi_value js_reply_write(napi_env env, napi_callback_info info) {
  ARGS(2);
  CLAIM();
  fuse_reply_write(req, (size_t)num(env, argv[1]));
  DONE();
}

static napi_value js_reply_xattr(napi_env env, napi_callback_info info) {
  ARGS(2);
  CLAIM();
  fuse_reply_xattr(req, (size_t)num(env, argv[1]));
  DONE();
}

static napi_value js_reply_lseek(napi_env env, napi_callback_info info) {
  ARGS(2);
  CLAIM();
  fuse_reply_lseek(req, (off_t)num(env, argv[1]));
  DONE();
}

static napi_value js_reply_statfs(napi_env env, napi_callback_info info) {
  ARGS(1);
  CLAIM();
  const double *r = g_scratch + REPLY_BASE;
  struct statvfs st;
  memset(&st, 0, sizeof st);
  st.f_bsize = (unsigned long)r[0];
  st.f_frsize = (unsigned long)r[1];
  st.f_blocks = (fsblkcnt_t)r[2];
  st.f_bfree = (fsblkcnt_t)r[3];
  st.f_bavail = (fsblkcnt_t)r[4];
  st.f_files = (fsfilcnt_t)r[5];
  st.f_ffree = (fsfilcnt_t)r[6];
  st.f_favail = (fsfilcnt_t)r[7];
  st.f_fsid = (unsigned long)r[8];
  st.f_namemax = (unsigned long)r[9];
  fuse_reply_statfs(req, &st);
  DONE();
}

static bool bytes_of(napi_env env, napi_value v, void **data, size_t *len) {
  napi_typedarray_type type;
  napi_value ab;
  size_t offset;
  if (napi_get_typedarray_info(env, v, &type, len, data, &ab, &offset) != napi_ok) return false;
  return type == napi_uint8_array;
}

/* replyBuf(id, bytes[, length]): data for read, readdir, getxattr and listxattr. */
static napi_value js_reply_buf(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  double id = num(env, argv[0]);
  void *data;
  size_t len;
  if (!bytes_of(env, argv[1], &data, &len)) {
    napi_throw_type_error(env, NULL, "replyBuf: bytes must be a Uint8Array");
    return NULL;
  }
  if (argc > 2) {
    double n = num(env, argv[2]);
    if (n >= 0 && n < (double)len) len = (size_t)n;
  }
  CLAIM();
  fuse_reply_buf(req, data, len);
  DONE();
}

/* replyIov(id, [bytes, ...]): a read answered from several chunks without joining them first. */
static napi_value js_reply_iov(napi_env env, napi_callback_info info) {
  ARGS(2);
  uint32_t n = 0;
  napi_get_array_length(env, argv[1], &n);
  struct iovec stack_iov[16];
  struct iovec *iov = n <= 16 ? stack_iov : malloc(n * sizeof(struct iovec));
  if (!iov) {
    napi_throw_error(env, "ENOMEM", "replyIov: out of memory");
    return NULL;
  }
  for (uint32_t i = 0; i < n; i++) {
    napi_value el;
    napi_get_element(env, argv[1], i, &el);
    if (!bytes_of(env, el, &iov[i].iov_base, &iov[i].iov_len)) {
      if (iov != stack_iov) free(iov);
      napi_throw_type_error(env, NULL, "replyIov: every part must be a Uint8Array");
      return NULL;
    }
  }
  slot_t *slot;
  fuse_req_t req = claim(id, &slot);
  if (req) {
    fuse_reply_iov(req, iov, (int)n);
    release_claimed(slot);
  }
  if (iov != stack_iov) free(iov);
  return js_bool(env, req != NULL);
}

static char *get_string(napi_env env, napi_value v, bool utf8) {
  size_t len = 0;
  napi_status st = utf8 ? napi_get_value_string_utf8(env, v, NULL, 0, &len)
                        : napi_get_value_string_latin1(env, v, NULL, 0, &len);
  if (st != napi_ok) return NULL;
  char *out = malloc(len + 1);
  if (!out) return NULL;
  if (utf8) napi_get_value_string_utf8(env, v, out, len + 1, &len);
  else napi_get_value_string_latin1(env, v, out, len + 1, &len);
  return out;
}

/* releasePayload(buffer): the write's handler has settled; detaching frees the Buffer's backing
 * store now (not at some later collection), so its receive buffer goes back to the pool. */
static napi_value js_release_payload(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], ab;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  bool detached = true;
  if (napi_get_typedarray_info(env, argv[0], NULL, NULL, NULL, &ab, NULL) == napi_ok &&
      napi_is_detached_arraybuffer(env, ab, &detached) == napi_ok && !detached)
    napi_detach_arraybuffer(env, ab);
  return NULL;
}

/* replyReadlink(id, target, utf8) */
static napi_value js_reply_readlink(napi_env env, napi_callback_info info) {
  ARGS(3);
  bool utf8 = true;
  napi_get_value_bool(env, argv[2], &utf8);
  char *target = get_string(env, argv[1], utf8);
  if (!target) {
    napi_throw_type_error(env, NULL, "replyReadlink: target must be a string");
    return NULL;
  }
  slot_t *slot;
  fuse_req_t req = claim(id, &slot);
  if (req) {
    fuse_reply_readlink(req, target);
    release_claimed(slot);
  }
  free(target);
  return js_bool(env, req != NULL);
}

/* ---- kernel notifications (notify thread) ---- */

static void *notify_main(void *arg) {
  session_t *ss = arg;
  pthread_mutex_lock(&ss->notify_lock);
  for (;;) {
    while (!ss->notify_head && !ss->notify_stop) pthread_cond_wait(&ss->notify_cond, &ss->notify_lock);
    notify_job_t *job = ss->notify_head;
    if (!job) break; /* stopping, queue drained */
    ss->notify_head = job->next;
    if (!ss->notify_head) ss->notify_tail = NULL;
    bool stopping = ss->notify_stop;
    pthread_mutex_unlock(&ss->notify_lock);
    if (stopping) {
      job->result = -ENOTCONN;
    } else if (job->kind == N_INVAL_INODE) {
      job->result = fuse_lowlevel_notify_inval_inode(ss->se, job->ino, job->off, job->len);
    } else if (job->kind == N_INVAL_ENTRY) {
      job->result = fuse_lowlevel_notify_inval_entry(ss->se, job->ino, job->name, strlen(job->name));
    } else {
      job->result = fuse_lowlevel_notify_delete(ss->se, job->ino, job->child, job->name, strlen(job->name));
    }
    event_post(ss, EV_NOTIFIED, NULL, 0, job);
    pthread_mutex_lock(&ss->notify_lock);
  }
  pthread_mutex_unlock(&ss->notify_lock);
  return NULL;
}

static session_t *session_of(napi_env env, napi_value v) {
  void *p = NULL;
  napi_get_value_external(env, v, &p);
  return p;
}

/* notify(session, kind, ino, a, b | name) → Promise<number>: 0, or a negative errno
 * (-ENOENT when the kernel had nothing cached: not a failure). */
static napi_value js_notify(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  session_t *ss = session_of(env, argv[0]);
  notify_job_t *job = calloc(1, sizeof *job);
  napi_value promise;
  if (!ss || !job) {
    free(job);
    napi_throw_error(env, NULL, "notify: no session");
    return NULL;
  }
  napi_create_promise(env, &job->deferred, &promise);
  job->kind = (notify_kind_t)num(env, argv[1]);
  job->ino = (fuse_ino_t)num(env, argv[2]);
  if (job->kind == N_INVAL_INODE) {
    job->off = (off_t)num(env, argv[3]);
    job->len = (off_t)num(env, argv[4]);
  } else {
    if (job->kind == N_DELETE) job->child = (fuse_ino_t)num(env, argv[3]);
    job->name = get_string(env, argv[4], ss->utf8_names);
  }
  pthread_mutex_lock(&ss->notify_lock);
  bool running = ss->loop_started && !ss->notify_stop;
  if (running) {
    if (ss->notify_tail) ss->notify_tail->next = job; else ss->notify_head = job;
    ss->notify_tail = job;
    pthread_cond_signal(&ss->notify_cond);
  }
  pthread_mutex_unlock(&ss->notify_lock);
  if (!running) {
    napi_value r;
    napi_create_int32(env, -ENOTCONN, &r);
    napi_resolve_deferred(env, job->deferred, r);
    free(job->name);
    free(job);
  }
  return promise;
}

/* ---- session lifecycle ---- */

static void session_unref(session_t *ss) {
  if (--ss->refs > 0) return;
  pthread_mutex_destroy(&ss->notify_lock);
  pthread_cond_destroy(&ss->notify_cond);
  free(ss->mountpoint);
  free(ss->no_xattrs);
  free(ss->clean_fhs);
  free(ss->computed_xattrs);
  if (ss->xattr_namespaces)
    for (char **ns = ss->xattr_namespaces; *ns; ns++) free(*ns);
  free(ss->xattr_namespaces);
  free(ss);
}

static void tsfn_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  session_unref(data);
}

static void external_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  session_unref(data);
}

/* Operation bits (1 << OP_x) say which operations the filesystem implements; the others are left
 * to libfuse's and the kernel's defaults, which are cheaper than a round trip answering ENOSYS. */
static void build_ops(session_t *ss, uint64_t mask) {
  struct fuse_lowlevel_ops *o = &ss->ops;
  memset(o, 0, sizeof *o);
  o->init = op_init;
  o->destroy = op_destroy;
#define OP(code, field, fn) if (mask & (1ull << code)) o->field = fn
  OP(OP_LOOKUP, lookup, op_lookup);
  OP(OP_FORGET, forget, op_forget);
  OP(OP_FORGET, forget_multi, op_forget_multi);
  OP(OP_GETATTR, getattr, op_getattr);
  OP(OP_SETATTR, setattr, op_setattr);
  OP(OP_READLINK, readlink, op_readlink);
  OP(OP_MKNOD, mknod, op_mknod);
  OP(OP_MKDIR, mkdir, op_mkdir);
  OP(OP_UNLINK, unlink, op_unlink);
  OP(OP_RMDIR, rmdir, op_rmdir);
  OP(OP_SYMLINK, symlink, op_symlink);
  OP(OP_RENAME, rename, op_rename);
  OP(OP_LINK, link, op_link);
  OP(OP_OPEN, open, op_open);
  OP(OP_READ, read, op_read);
  OP(OP_WRITE, write, op_write);
  OP(OP_FLUSH, flush, op_flush);
  OP(OP_RELEASE, release, op_release);
  OP(OP_FSYNC, fsync, op_fsync);
  OP(OP_OPENDIR, opendir, op_opendir);
  OP(OP_READDIR, readdir, op_readdir);
  OP(OP_READDIRPLUS, readdirplus, op_readdirplus);
  OP(OP_RELEASEDIR, releasedir, op_releasedir);
  OP(OP_FSYNCDIR, fsyncdir, op_fsyncdir);
  OP(OP_STATFS, statfs, op_statfs);
  OP(OP_SETXATTR, setxattr, op_setxattr);
  OP(OP_GETXATTR, getxattr, op_getxattr);
  OP(OP_LISTXATTR, listxattr, op_listxattr);
  OP(OP_REMOVEXATTR, removexattr, op_removexattr);
  OP(OP_ACCESS, access, op_access);
  OP(OP_CREATE, create, op_create);
  OP(OP_FALLOCATE, fallocate, op_fallocate);
  OP(OP_LSEEK, lseek, op_lseek);
  OP(OP_COPY_FILE_RANGE, copy_file_range, op_copy_file_range);
#undef OP
}

/* Option vector order: must match SESSION_OPTION_ORDER in src/fuse/ops.ts. Capability switches
 * are -1 (leave libfuse's default), 0 (off) or 1 (on where the kernel offers it). */
enum {
  O_OPS_MASK, O_TIMEOUT_MS, O_MAX_WRITE, O_MAX_READAHEAD, O_MAX_BACKGROUND, O_CONGESTION,
  O_MAX_THREADS, O_TIME_GRAN, O_UTF8_NAMES, O_DEBUG, O_WRITEBACK, O_ASYNC_READ, O_READDIRPLUS,
  O_READDIRPLUS_AUTO, O_ATOMIC_O_TRUNC, O_PARALLEL_DIROPS, O_CACHE_SYMLINKS, O_EXPLICIT_INVAL,
  O_POSIX_ACL, O_HANDLE_KILLPRIV, O_FLUSH_WRITTEN_ONLY, O_COUNT
};

/* createSession(dispatch, options: number[]) → session */
static napi_value js_create_session(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (!g_scratch) {
    napi_throw_error(env, NULL, "createSession: setScratch must be called first");
    return NULL;
  }
  double o[O_COUNT];
  for (uint32_t i = 0; i < O_COUNT; i++) {
    napi_value v;
    napi_get_element(env, argv[1], i, &v);
    o[i] = num(env, v);
  }
  session_t *ss = calloc(1, sizeof *ss);
  if (ss) ss->no_xattrs = calloc(NO_XATTRS_SLOTS, sizeof(uint64_t));
  if (ss && argc > 2) {
    napi_valuetype type;
    napi_typeof(env, argv[2], &type);
    if (type == napi_string) {
      ss->computed_xattrs = get_string(env, argv[2], true);
      if (ss->computed_xattrs) ss->computed_xattrs_len = strlen(ss->computed_xattrs);
    }
  }
  bool is_array = false;
  if (ss && argc > 3) napi_is_array(env, argv[3], &is_array);
  if (is_array) {
    uint32_t n = 0;
    napi_get_array_length(env, argv[3], &n);
    ss->xattr_namespaces = calloc(n + 1, sizeof(char *));
    for (uint32_t i = 0; ss->xattr_namespaces && i < n; i++) {
      napi_value v;
      napi_get_element(env, argv[3], i, &v);
      ss->xattr_namespaces[i] = get_string(env, v, true);
      if (!ss->xattr_namespaces[i]) ss->xattr_namespaces[i] = strdup("");
    }
  }
  if (ss && o[O_FLUSH_WRITTEN_ONLY] != 0) ss->clean_fhs = calloc(CLEAN_FH_SLOTS, sizeof(uint64_t));
  if (!ss || !ss->no_xattrs || (o[O_FLUSH_WRITTEN_ONLY] != 0 && !ss->clean_fhs)) {
    if (ss) {
      free(ss->no_xattrs);
      free(ss->clean_fhs);
    }
    free(ss);
    napi_throw_error(env, "ENOMEM", "createSession: out of memory");
    return NULL;
  }
  build_ops(ss, (uint64_t)o[O_OPS_MASK]);
  ss->timeout_ms = (uint64_t)o[O_TIMEOUT_MS];
  ss->max_write = (uint32_t)o[O_MAX_WRITE];
  ss->max_readahead = (uint32_t)o[O_MAX_READAHEAD];
  ss->max_background = (uint32_t)o[O_MAX_BACKGROUND];
  ss->congestion_threshold = (uint32_t)o[O_CONGESTION];
  ss->max_threads = o[O_MAX_THREADS] > 0 ? (uint32_t)o[O_MAX_THREADS] : 8;
  ss->time_gran = (uint32_t)o[O_TIME_GRAN];
  ss->utf8_names = o[O_UTF8_NAMES] != 0;
  ss->debug = o[O_DEBUG] != 0;
  ss->writeback_cache = (int)o[O_WRITEBACK];
  ss->async_read = (int)o[O_ASYNC_READ];
  ss->readdirplus = (int)o[O_READDIRPLUS];
  ss->readdirplus_auto = (int)o[O_READDIRPLUS_AUTO];
  ss->atomic_o_trunc = (int)o[O_ATOMIC_O_TRUNC];
  ss->parallel_dirops = (int)o[O_PARALLEL_DIROPS];
  ss->cache_symlinks = (int)o[O_CACHE_SYMLINKS];
  ss->explicit_inval_data = (int)o[O_EXPLICIT_INVAL];
  ss->posix_acl = (int)o[O_POSIX_ACL];
  ss->handle_killpriv = (int)o[O_HANDLE_KILLPRIV];
  ss->refs = 2;
  pthread_mutex_init(&ss->notify_lock, NULL);
  pthread_cond_init(&ss->notify_cond, NULL);

  napi_value name, external;
  napi_create_string_utf8(env, "orbit-fuse", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[0], NULL, name, 0, 1, ss, tsfn_finalize, ss, call_js,
                                      &ss->tsfn) != napi_ok) {
    free(ss);
    napi_throw_error(env, NULL, "createSession: cannot create the request queue");
    return NULL;
  }
  /* Until mounted, the session must not keep the process alive. */
  napi_unref_threadsafe_function(env, ss->tsfn);
  napi_create_external(env, ss, external_finalize, NULL, &external);
  return external;
}

/* One FUSE worker: receive a request into a pooled buffer, let libfuse decode it and call our
 * op_* (which queue it for JavaScript), repeat until the connection ends. */
static void *worker_main(void *arg) {
  session_t *ss = arg;
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals belong to the JS thread */
  struct fuse_buf fbuf;
  memset(&fbuf, 0, sizeof fbuf);
  int ret = 0;
  while (!fuse_session_exited(ss->se)) {
    if (!fbuf.mem) fbuf.mem = recv_alloc();
    if (!fbuf.mem) {
      ret = -ENOMEM;
      break;
    }
    int res = fuse_session_receive_buf(ss->se, &fbuf);
    if (res == -EINTR || res == -EAGAIN) continue;
    if (res <= 0) { /* 0: the connection ended (unmount) */
      ret = res;
      break;
    }
    t_recv = fbuf.mem;
    fuse_session_process_buf(ss->se, &fbuf);
    if (!t_recv) fbuf.mem = NULL; /* a write took the buffer */
    t_recv = NULL;
  }
  if (fbuf.mem) recv_free(fbuf.mem);
  fuse_session_exit(ss->se);
  return (void *)(intptr_t)ret;
}

static void *loop_main(void *arg) {
  session_t *ss = arg;
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals belong to the JS thread */

  /* This thread is one of the workers; the others join it. */
  pthread_t *workers = calloc(ss->max_threads, sizeof(pthread_t));
  uint32_t started = 0;
  while (workers && started + 1 < ss->max_threads &&
         pthread_create(&workers[started], NULL, worker_main, ss) == 0)
    started++;
  int ret = (int)(intptr_t)worker_main(ss);
  for (uint32_t i = 0; i < started; i++) pthread_join(workers[i], NULL);
  free(workers);

  /* The kernel connection is gone (unmounted or aborted). Answer what JS still holds, wait for
   * replies being written, stop notifications, then free libfuse's session. */
  pthread_mutex_lock(&g_lock);
  ss->closing = true;
  while (ss->head) {
    slot_t *s = ss->head;
    unlink_in_flight_locked(s);
    fuse_req_t req = s->req;
    slot_unref_locked(s);
    pthread_mutex_unlock(&g_lock);
    fuse_reply_err(req, ENODEV);
    pthread_mutex_lock(&g_lock);
  }
  while (ss->replying > 0) pthread_cond_wait(&g_replied_cond, &g_lock);
  for (session_t **p = &g_sessions; *p; p = &(*p)->next_session) {
    if (*p == ss) {
      *p = ss->next_session;
      break;
    }
  }
  pthread_mutex_unlock(&g_lock);

  pthread_mutex_lock(&ss->notify_lock);
  ss->notify_stop = true;
  pthread_cond_signal(&ss->notify_cond);
  pthread_mutex_unlock(&ss->notify_lock);
  pthread_join(ss->notify_thread, NULL);

  fuse_session_unmount(ss->se);
  fuse_session_destroy(ss->se);
  ss->se = NULL;
  double a[1] = {ret};
  event_post(ss, EV_CLOSED, a, 1, NULL);
  napi_release_threadsafe_function(ss->tsfn, napi_tsfn_release);
  return NULL;
}

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  session_t *session;
  char *mountpoint, *options;
  bool lazy;
  int err;
  char message[320];
} async_op_t;

static void mount_execute(napi_env env, void *data) {
  (void)env;
  async_op_t *op = data;
  session_t *ss = op->session;
  char *argv[5] = {"orbit", "-o", op->options, NULL, NULL};
  int argc = 3;
  if (ss->debug) argv[argc++] = "-d";
  struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
  t_log[0] = 0;
  ss->se = fuse_session_new(&args, &ss->ops, sizeof ss->ops, ss);
  fuse_opt_free_args(&args);
  if (!ss->se) {
    op->err = EINVAL;
    snprintf(op->message, sizeof op->message, "cannot start a FUSE session: %s",
             t_log[0] ? t_log : "bad mount options");
    return;
  }
  t_log[0] = 0;
  errno = 0;
  if (fuse_session_mount(ss->se, op->mountpoint) != 0) {
    op->err = errno ? errno : EIO;
    snprintf(op->message, sizeof op->message, "cannot mount %s: %s", op->mountpoint,
             t_log[0] ? t_log : strerror(op->err));
    fuse_session_destroy(ss->se);
    ss->se = NULL;
  }
}

static void async_op_free(napi_env env, async_op_t *op) {
  napi_delete_async_work(env, op->work);
  free(op->mountpoint);
  free(op->options);
  free(op);
}

static void reject_with(napi_env env, async_op_t *op) {
  napi_value msg, err, code;
  napi_create_string_utf8(env, op->message, NAPI_AUTO_LENGTH, &msg);
  napi_create_int32(env, op->err, &code);
  napi_create_error(env, NULL, msg, &err);
  napi_set_named_property(env, err, "errno", code);
  napi_reject_deferred(env, op->deferred, err);
}

static void mount_complete(napi_env env, napi_status status, void *data) {
  (void)status;
  async_op_t *op = data;
  session_t *ss = op->session;
  if (op->err == 0) {
    ss->mountpoint = strdup(op->mountpoint);
    pthread_mutex_lock(&g_lock);
    ss->next_session = g_sessions;
    g_sessions = ss;
    if (!g_watchdog_started) {
      pthread_t t;
      g_watchdog_started = pthread_create(&t, NULL, watchdog_main, NULL) == 0;
      if (g_watchdog_started) pthread_detach(t);
    }
    pthread_mutex_unlock(&g_lock);
    napi_ref_threadsafe_function(env, ss->tsfn); /* a mounted filesystem keeps the process alive */
    ss->loop_started = true;
    pthread_create(&ss->notify_thread, NULL, notify_main, ss);
    if (pthread_create(&ss->loop_thread, NULL, loop_main, ss) != 0) {
      op->err = errno;
      snprintf(op->message, sizeof op->message, "cannot start the FUSE loop thread");
    } else {
      pthread_detach(ss->loop_thread);
    }
  }
  if (op->err == 0) {
    napi_value undefined;
    napi_get_undefined(env, &undefined);
    napi_resolve_deferred(env, op->deferred, undefined);
  } else {
    if (!ss->loop_started) napi_release_threadsafe_function(ss->tsfn, napi_tsfn_release);
    reject_with(env, op);
  }
  async_op_free(env, op);
}

static napi_value start_async(napi_env env, async_op_t *op, const char *name, napi_async_execute_callback ex,
                              napi_async_complete_callback done) {
  napi_value promise, resource_name;
  napi_create_promise(env, &op->deferred, &promise);
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resource_name);
  napi_create_async_work(env, NULL, resource_name, ex, done, op, &op->work);
  napi_queue_async_work(env, op->work);
  return promise;
}

/* mount(session, mountpoint, options) → Promise<void>. Opening /dev/fuse and mount(2) run on the
 * libuv pool: mount(2) can block on a hung filesystem below the mountpoint. */
static napi_value js_mount(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  session_t *ss = session_of(env, argv[0]);
  if (!ss || ss->mount_tried) {
    napi_throw_error(env, NULL, "mount: a session mounts once");
    return NULL;
  }
  ss->mount_tried = true;
  async_op_t *op = calloc(1, sizeof *op);
  op->session = ss;
  op->mountpoint = get_string(env, argv[1], true);
  op->options = get_string(env, argv[2], true);
  return start_async(env, op, "orbit-fuse-mount", mount_execute, mount_complete);
}

static int run_fusermount(const char *mountpoint, bool lazy) {
  char *argv[] = {"fusermount3", lazy ? "-uz" : "-u", "--", (char *)mountpoint, NULL};
  pid_t pid;
  if (posix_spawnp(&pid, "fusermount3", NULL, NULL, argv, environ) != 0) return ENOENT;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : EBUSY;
}

static int do_unmount(const char *mountpoint, bool lazy) {
  if (geteuid() == 0) return umount2(mountpoint, lazy ? MNT_DETACH : 0) == 0 ? 0 : errno;
  return run_fusermount(mountpoint, lazy);
}

static void unmount_execute(napi_env env, void *data) {
  (void)env;
  async_op_t *op = data;
  op->err = do_unmount(op->mountpoint, op->lazy);
  if (op->err) snprintf(op->message, sizeof op->message, "cannot unmount %s: %s", op->mountpoint, strerror(op->err));
}

static void unmount_complete(napi_env env, napi_status status, void *data) {
  (void)status;
  async_op_t *op = data;
  if (op->err == 0) {
    napi_value undefined;
    napi_get_undefined(env, &undefined);
    napi_resolve_deferred(env, op->deferred, undefined);
  } else {
    reject_with(env, op);
  }
  async_op_free(env, op);
}

/* unmount(mountpoint, lazy) → Promise<void>. The loop ends by itself once the kernel lets go. */
static napi_value js_unmount(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  async_op_t *op = calloc(1, sizeof *op);
  op->mountpoint = get_string(env, argv[0], true);
  napi_get_value_bool(env, argv[1], &op->lazy);
  return start_async(env, op, "orbit-fuse-unmount", unmount_execute, unmount_complete);
}

/* unmountSync(mountpoint): lazy detach, for process exit only (where nothing async runs). */
static napi_value js_unmount_sync(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char *mp = get_string(env, argv[0], true);
  napi_value r;
  napi_create_int32(env, mp ? do_unmount(mp, true) : EINVAL, &r);
  free(mp);
  return r;
}

/* setScratch(arrayBuffer): the shared Float64 exchange area, kept alive for the process's life. */
static napi_value js_set_scratch(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void *data;
  size_t len;
  if (napi_get_arraybuffer_info(env, argv[0], &data, &len) != napi_ok || len < SCRATCH_DOUBLES * sizeof(double)) {
    napi_throw_type_error(env, NULL, "setScratch: needs an ArrayBuffer of 64 doubles");
    return NULL;
  }
  if (g_scratch_ref) napi_delete_reference(env, g_scratch_ref);
  napi_create_reference(env, argv[0], 1, &g_scratch_ref);
  g_scratch = data;
  return NULL;
}

/* markNoXattrs(session, inos: Float64Array): these inodes have no extended attributes. */
static napi_value js_mark_no_xattrs(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  session_t *ss = session_of(env, argv[0]);
  napi_typedarray_type type;
  size_t n, offset;
  void *data;
  napi_value ab;
  if (!ss || napi_get_typedarray_info(env, argv[1], &type, &n, &data, &ab, &offset) != napi_ok ||
      type != napi_float64_array) {
    napi_throw_type_error(env, NULL, "markNoXattrs: needs a session and a Float64Array");
    return NULL;
  }
  const double *inos = data;
  for (size_t i = 0; i < n; i++) no_xattrs_mark(ss, (uint64_t)inos[i]);
  return NULL;
}

/* unmarkNoXattrs(session, ino): the inode's extended attributes may have changed. */
static napi_value js_unmark_no_xattrs(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  session_t *ss = session_of(env, argv[0]);
  if (!ss) {
    napi_throw_type_error(env, NULL, "unmarkNoXattrs: no session");
    return NULL;
  }
  no_xattrs_unmark(ss, (uint64_t)num(env, argv[1]));
  return NULL;
}

static napi_value js_libfuse_version(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value v;
  napi_create_int32(env, fuse_version(), &v);
  return v;
}

static napi_value init_module(napi_env env, napi_value exports) {
  fuse_set_log_func(log_to_thread);
  /* libfuse reads each request into a buffer of FUSE_MAX_MAX_PAGES (256) pages plus a header page. */
  g_recv_size = 256 * (size_t)sysconf(_SC_PAGESIZE) + 4096;
  napi_property_descriptor props[] = {
#define FN(name, fn) {name, NULL, fn, NULL, NULL, NULL, napi_enumerable, NULL}
    FN("setScratch", js_set_scratch),
    FN("createSession", js_create_session),
    FN("mount", js_mount),
    FN("unmount", js_unmount),
    FN("unmountSync", js_unmount_sync),
    FN("notify", js_notify),
    FN("libfuseVersion", js_libfuse_version),
    FN("markNoXattrs", js_mark_no_xattrs),
    FN("unmarkNoXattrs", js_unmark_no_xattrs),
    FN("replyErr", js_reply_err),
    FN("replyEntry", js_reply_entry),
    FN("replyCreate", js_reply_create),
    FN("replyAttr", js_reply_attr),
    FN("replyOpen", js_reply_open),
    FN("replyWrite", js_reply_write),
    FN("replyXattr", js_reply_xattr),
    FN("replyLseek", js_reply_lseek),
    FN("replyStatfs", js_reply_statfs),
    FN("replyBuf", js_reply_buf),
    FN("replyIov", js_reply_iov),
    FN("replyReadlink", js_reply_readlink),
    FN("releasePayload", js_release_payload),
#undef FN
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init_module)
