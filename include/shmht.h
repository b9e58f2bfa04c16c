/* shmht.h - the C API of shmht: a hash table in shared memory that C programs, every
 * language's FFI, and C++ and Python processes use at once.
 *
 *   shmht_table *t;
 *   if (shmht_open("jobs", NULL, &t) != SHMHT_OK) {          // /dev/shm/jobs, created if missing
 *     fprintf(stderr, "%s\n", shmht_last_error());
 *     return 1;
 *   }
 *   shmht_put(t, "alice", 5, "42", 2);
 *   char buf[64];
 *   size_t len;
 *   if (shmht_get(t, "alice", 5, buf, sizeof buf, &len) == SHMHT_OK) printf("%.*s\n", (int)len, buf);
 *   shmht_close(t);
 *
 * Build: cc -std=c11 prog.c $(pkg-config --cflags --libs shmht)
 *
 * Conventions (those of LMDB and libgit2):
 *  - Every function returns an int: SHMHT_OK (0); a positive outcome that is not an error
 *    (SHMHT_NOT_FOUND: the key is absent; SHMHT_KEY_EXISTS, SHMHT_CAS_MISMATCH, SHMHT_END);
 *    or a negative error code. shmht_strerror() names any code; after an error,
 *    shmht_last_error() gives this thread's precise message ("key is 300 bytes; this
 *    table's maximum is 255").
 *  - Keys and values are byte strings: a pointer and a length. A pointer may be NULL only
 *    when its length is 0 (except where NULL means "absent": shmht_cas). A NULL handle or
 *    out-parameter gives SHMHT_INVALID_ARGUMENT, never a crash.
 *  - A table handle belongs to one thread at a time; threads each open their own handle,
 *    which is cheap. After fork(), the child opens the table again (an inherited handle's
 *    calls fail with SHMHT_INVALID_ARGUMENT).
 *  - No C++ exception leaves these functions; an allocation failure is SHMHT_OUT_OF_MEMORY.
 *  - On an error nothing is changed in the table, and no value is lost.
 *
 * The same table is shmht::Table in C++ (shmht/table.hpp) and shmht.Table in Python;
 * README.md ("Using shmht from C, C++ and other programs") maps the names across them.
 */
#ifndef SHMHT_H
#define SHMHT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Result codes ------------------------------------------------------------------- */

enum {
  SHMHT_OK = 0,

  /* Outcomes that are not errors (positive). */
  SHMHT_NOT_FOUND = 1,     /* the key is absent */
  SHMHT_KEY_EXISTS = 2,    /* shmht_insert: the key is present; nothing changed */
  SHMHT_CAS_MISMATCH = 3,  /* shmht_cas: the value was not the expected one; nothing changed */
  SHMHT_END = 4,           /* shmht_iter_next: no more items */

  /* Errors (negative); the last error message says more. One per shmht::ErrorCode: */
  SHMHT_KEY_TOO_LARGE = -1,         /* key longer than the table's max_key_bytes */
  SHMHT_VALUE_TOO_LARGE = -2,       /* value longer than the table's max_value_bytes */
  SHMHT_TABLE_FULL = -3,            /* no free slot within the probe limit, or max_bytes reached */
  SHMHT_NO_SPACE = -4,              /* the filesystem has no room for the table to grow */
  SHMHT_CORRUPT = -5,               /* the file fails validation */
  SHMHT_VERSION_MISMATCH = -6,      /* written by another layout version or ABI */
  SHMHT_ENGINE_MISMATCH = -7,       /* live processes use another engine on this table */
  SHMHT_ENGINE_UNAVAILABLE = -8,    /* the engine is not built */
  SHMHT_PERMISSION_DENIED = -9,     /* the OS refused access, or a write through a read-only handle */
  SHMHT_NO_SUCH_TABLE = -10,        /* no table of that name (shmht::ErrorCode::kNotFound) */
  SHMHT_ALREADY_EXISTS = -11,       /* SHMHT_OPEN_EXCL of a name that exists */
  SHMHT_TOO_MANY_PROCESSES = -12,   /* the table's max_processes handles are open */
  SHMHT_IN_USE = -13,               /* live processes are attached (shmht_unlink), or the table is busy */
  SHMHT_INVALID_ARGUMENT = -14,     /* a bad option or argument (a NULL pointer, a closed handle...) */
  SHMHT_SYSTEM = -15,               /* an unexpected OS error (errno in the message) */
  SHMHT_NOT_A_COUNTER = -16,        /* shmht_add: the value is not a counter */
  SHMHT_COUNTER_OVERFLOW = -17,     /* shmht_add: the sum leaves the range of int64_t */
  /* Errors of this API: */
  SHMHT_BUFFER_TOO_SMALL = -100,    /* the value is longer than the buffer; *vlen says how long */
  SHMHT_OUT_OF_MEMORY = -101,       /* an allocation failed */
  SHMHT_INTERNAL = -102             /* anything else (a bug: please report the message) */
};

/* A name for `code` ("key absent", "buffer too small"...); never NULL, static storage. */
const char *shmht_strerror(int code);

/* The message of the last error returned on this thread (a negative code); "" if none
 * yet. Valid until this thread's next shmht call. */
const char *shmht_last_error(void);

/* ---- Opening ------------------------------------------------------------------------ */

typedef struct shmht_table shmht_table;

/* Engines: how processes coordinate (README.md compares them). The values of shmht::Engine. */
enum {
  SHMHT_ENGINE_ACTIVE = 0,    /* open: the engine the table is used with; create: the default (seqlock) */
  SHMHT_ENGINE_GLOBAL = 1,
  SHMHT_ENGINE_STRIPED = 2,
  SHMHT_ENGINE_SEQLOCK = 3,
  SHMHT_ENGINE_LOCKFREE = 4
};

/* shmht_options.flags */
enum {
  SHMHT_OPEN_CREATE = 1u << 0,  /* create the table if it does not exist (set by shmht_options_init) */
  SHMHT_OPEN_EXCL = 1u << 1,    /* only create: SHMHT_ALREADY_EXISTS if it exists */
  SHMHT_OPEN_READ_ONLY = 1u << 2,          /* map read-only (a seqlock table only); writes fail */
  SHMHT_OPEN_TRUST_FOREIGN_OWNER = 1u << 3 /* open a table another user owns though anyone may write it */
};

/* How to open or create a table. Always fill it with shmht_options_init() first, then
 * change fields: struct_size lets later versions add fields at the end without breaking
 * programs built against this header. The creation fields apply only when the call
 * creates the table; an existing table keeps what it was created with. */
typedef struct shmht_options {
  size_t struct_size;        /* sizeof(shmht_options), set by shmht_options_init */
  uint32_t flags;            /* SHMHT_OPEN_* (default: SHMHT_OPEN_CREATE) */
  uint32_t engine;           /* SHMHT_ENGINE_* (default: SHMHT_ENGINE_ACTIVE); naming another engine
                                than the table's switches it, allowed only while no process is attached */
  uint64_t capacity;         /* items the table must hold (default 1048576) */
  uint32_t max_key_bytes;    /* default 1024 */
  uint32_t max_value_bytes;  /* default 65536 */
  uint64_t max_bytes;        /* the most the file may grow to (default 64 GiB; it grows on demand) */
  uint32_t max_processes;    /* handles open at once over all processes (default 128) */
  uint32_t mode;             /* file permission bits, umask applied (default 0600) */
  uint32_t stripes;          /* striped engine: lock stripes (default 64) */
} shmht_options;

/* Fills `opts` with the defaults above. */
void shmht_options_init(shmht_options *opts);

/* Opens the table `name` (a bare name: /dev/shm/<name>; or an absolute path). opts NULL:
 * the defaults (open with the active engine, create with default options if missing).
 * On success *out is a handle for shmht_close; on failure *out is NULL.
 * Errors: SHMHT_NO_SUCH_TABLE (missing, without SHMHT_OPEN_CREATE), SHMHT_ALREADY_EXISTS
 * (SHMHT_OPEN_EXCL), SHMHT_ENGINE_MISMATCH, SHMHT_INVALID_ARGUMENT (an option out of
 * range: the message names it), SHMHT_PERMISSION_DENIED, SHMHT_CORRUPT, ... */
int shmht_open(const char *name, const shmht_options *opts, shmht_table **out);

/* Detaches and frees the handle. NULL is ignored. The table stays (see shmht_unlink).
 * Iterators still open on the handle are detached: their shmht_iter_next returns
 * SHMHT_INVALID_ARGUMENT ("its table was closed"); shmht_iter_close still frees them. */
void shmht_close(shmht_table *t);

/* Deletes the table's file (a shmht table only). SHMHT_NO_SUCH_TABLE if there is none;
 * SHMHT_IN_USE, deleting nothing, while live processes (this one included: close your
 * handles first) are attached. */
int shmht_unlink(const char *name);
/* The same, even while processes are attached: they keep using the removed file, and
 * new openers get a new table. */
int shmht_unlink_force(const char *name);

/* ---- Operations (each one atomic) ----------------------------------------------------- */
/* Oversize arguments: a key longer than the table's max_key_bytes cannot be in the table,
 * so the calls that only look it up or remove it (shmht_get, shmht_del, shmht_take,
 * shmht_cas with an expected value) answer as for an absent key (SHMHT_NOT_FOUND,
 * SHMHT_CAS_MISMATCH); only a call that would store it (shmht_put, shmht_insert,
 * shmht_add, shmht_cas inserting) fails with SHMHT_KEY_TOO_LARGE. A value to store longer
 * than max_value_bytes is always SHMHT_VALUE_TOO_LARGE. */

/* Stores value under key, inserting or overwriting. */
int shmht_put(shmht_table *t, const void *key, size_t klen, const void *value, size_t vlen);

/* Stores value only if key is absent: SHMHT_KEY_EXISTS (nothing changed) otherwise. */
int shmht_insert(shmht_table *t, const void *key, size_t klen, const void *value, size_t vlen);

/* Copies key's value into buf (cap bytes) and sets *vlen to its length. SHMHT_NOT_FOUND
 * if absent. SHMHT_BUFFER_TOO_SMALL if the value is longer than cap: *vlen is its length
 * and nothing is copied; call again with a larger buffer (buf may be NULL when cap is 0,
 * to ask for the length). */
int shmht_get(shmht_table *t, const void *key, size_t klen, void *buf, size_t cap, size_t *vlen);

/* Erases key: SHMHT_OK, or SHMHT_NOT_FOUND if it was absent. */
int shmht_del(shmht_table *t, const void *key, size_t klen);

/* Erases key and copies the value it erased into buf, in one atomic step (a work
 * queue's pop): SHMHT_NOT_FOUND if absent. The value is never lost: when it is longer
 * than cap the call returns SHMHT_BUFFER_TOO_SMALL with *vlen set to its length and the
 * key still in the table. A write by another process is either before the take (its
 * value is the one returned) or after it (it stays). On a read-only handle this and
 * every other write (put, insert, del, take_any, add, cas) returns
 * SHMHT_PERMISSION_DENIED, whether or not the key is present, touching no buffer. */
int shmht_take(shmht_table *t, const void *key, size_t klen, void *buf, size_t cap, size_t *vlen);

/* Erases some item and returns it, in one atomic step (a work queue's pop: several
 * processes taking items each get different ones): SHMHT_OK with *key, *klen,
 * *value and *vlen set, or SHMHT_NOT_FOUND (the out-parameters untouched) when a full
 * walk found the table empty. The
 * returned bytes belong to the handle and stay valid until its next shmht_take_any or
 * shmht_close, so no buffer can be too small and no item is lost. Amortised O(1): the
 * handle keeps a cursor and resumes where it found the last item (C++ Table::take_any,
 * Python popitem). */
int shmht_take_any(shmht_table *t, const void **key, size_t *klen, const void **value, size_t *vlen);

/* Adds delta to the counter stored at key (an absent key counts as 0) and sets *result
 * (may be NULL) to the new value. A counter is the decimal text of an int64, as Redis
 * INCR keeps it ("20261206" + 1 stores "20261207"): an optional '-', then digits without
 * leading zeros. shmht::Table::add, Python's Table.add and `shmht add` use the same text.
 * A value that is not such a number (SHMHT_NOT_A_COUNTER) or a sum outside int64_t
 * (SHMHT_COUNTER_OVERFLOW) changes nothing. */
int shmht_add(shmht_table *t, const void *key, size_t klen, int64_t delta, int64_t *result);

/* Compare-and-set: if key's value equals `expected`, makes it `desired`: SHMHT_OK; else
 * SHMHT_CAS_MISMATCH, changing nothing. A NULL pointer means "absent" (its length is
 * ignored), so an empty value (a non-NULL pointer, length 0) is distinct from no value:
 *   expected NULL, desired v:  insert v if the key is absent;
 *   expected e,    desired v:  overwrite with v if the value is e;
 *   expected e,    desired NULL: erase the key if its value is e;
 *   expected NULL, desired NULL: change nothing; SHMHT_OK if the key is absent. */
int shmht_cas(shmht_table *t, const void *key, size_t klen, const void *expected, size_t elen,
              const void *desired, size_t dlen);

/* Items in the table (*out). */
int shmht_size(shmht_table *t, uint64_t *out);

/* A few facts about the table. Fill struct_size (sizeof(shmht_stats)) before the call. */
typedef struct shmht_stats {
  size_t struct_size;
  uint32_t engine;           /* SHMHT_ENGINE_* this handle uses */
  uint32_t max_key_bytes;
  uint32_t max_value_bytes;
  uint32_t max_processes;
  uint64_t capacity;         /* the starting size: the table grows past it */
  uint64_t items;
  uint64_t resident_bytes;   /* memory the table's file holds */
  /* Since 0.3.0 (a caller whose struct ends before them gets the fields it has): */
  uint64_t slot_array_bytes; /* the current slot array */
  uint32_t growths;          /* doublings of the slot array since create */
  uint32_t migrating;        /* 1 while entries move into the current array */
} shmht_stats;
int shmht_stats_get(shmht_table *t, shmht_stats *out);

/* ---- Iteration ---------------------------------------------------------------------- */

typedef struct shmht_iter shmht_iter;

/* Walks the items of `t`, a batch of home slots at a time. Weakly consistent, like
 * shmht::Table::for_each: a key present for the whole walk is seen exactly once; keys
 * inserted or erased meanwhile may or may not be. No lock is held between calls, so the
 * loop may write the table and may stop at any time. Once `t` is closed the iterator
 * returns SHMHT_INVALID_ARGUMENT ("its table was closed"); close it as usual. An
 * iterator belongs to its table handle's thread (opening, closing and stepping it change
 * the handle's list of iterators). After fork(), a child's inherited iterator may still
 * hand out the rest of the batch it had already copied (private copies, not the table);
 * its next batch fails with SHMHT_INVALID_ARGUMENT, as every call on an inherited handle
 * does. */
int shmht_iter_open(shmht_table *t, shmht_iter **out);
/* The next item: SHMHT_OK with *key, *klen and *value, *vlen pointing at copies owned by
 * the iterator (valid until the next shmht_iter_next or shmht_iter_close), or SHMHT_END. */
int shmht_iter_next(shmht_iter *it, const void **key, size_t *klen, const void **value, size_t *vlen);
/* Frees the iterator. NULL is ignored. */
void shmht_iter_close(shmht_iter *it);

#ifdef __cplusplus
}
#endif

#endif /* SHMHT_H */
