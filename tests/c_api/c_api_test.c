/* c_api_test.c - include/shmht.h from C11: every function, every error path, and a table
 * shared by forked processes. Compiled -std=c11 -Wall -Wextra -Werror -pedantic.
 *
 * Each test uses its own table name (shmht-c-api-<pid>-<n>) and unlinks it; main checks
 * that no file of this process is left in /dev/shm. alarm() bounds the whole run. */
#define _POSIX_C_SOURCE 200809L

#include <shmht.h>

#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures = 0;

#define CHECK(cond)                                                                   \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      fprintf(stderr, "%s:%d: CHECK(%s) failed (last error: %s)\n", __FILE__, __LINE__, \
              #cond, shmht_last_error());                                             \
      ++failures;                                                                     \
    }                                                                                 \
  } while (0)

/* CHECK that `call` returns `code`, printing both codes' names otherwise. */
#define CHECK_RC(call, code)                                                                  \
  do {                                                                                        \
    int rc_ = (call);                                                                         \
    if (rc_ != (code)) {                                                                      \
      fprintf(stderr, "%s:%d: %s returned %d (%s), expected %s (%s); last error: %s\n",       \
              __FILE__, __LINE__, #call, rc_, shmht_strerror(rc_), #code, shmht_strerror(code), \
              shmht_last_error());                                                            \
      ++failures;                                                                             \
    }                                                                                         \
  } while (0)

static int name_counter = 0;

/* A fresh table name for one test, into buf (64 bytes). */
static void new_name(char *buf) {
  snprintf(buf, 64, "shmht-c-api-%ld-%d", (long)getpid(), name_counter++);
}

/* A small table (fast to create), with the given engine. */
static shmht_table *open_small(const char *name, uint32_t engine) {
  shmht_options o;
  shmht_options_init(&o);
  o.flags = SHMHT_OPEN_CREATE | SHMHT_OPEN_EXCL;
  o.engine = engine;
  o.capacity = 1024;
  o.max_key_bytes = 16;
  o.max_value_bytes = 64;
  o.max_bytes = 8u << 20;
  o.max_processes = 8;
  shmht_table *t = NULL;
  CHECK_RC(shmht_open(name, &o, &t), SHMHT_OK);
  CHECK(t != NULL);
  return t;
}

/* put, get, insert, del, size on one engine. */
static void test_basic_operations(uint32_t engine) {
  char name[64];
  new_name(name);
  shmht_table *t = open_small(name, engine);
  if (t == NULL) return;
  char buf[64];
  size_t len = 0;

  CHECK_RC(shmht_get(t, "k", 1, buf, sizeof buf, &len), SHMHT_NOT_FOUND);
  CHECK_RC(shmht_put(t, "k", 1, "v1", 2), SHMHT_OK);
  CHECK_RC(shmht_get(t, "k", 1, buf, sizeof buf, &len), SHMHT_OK);
  CHECK(len == 2 && memcmp(buf, "v1", 2) == 0);
  CHECK_RC(shmht_put(t, "k", 1, "value-2", 7), SHMHT_OK); /* overwrite */
  CHECK_RC(shmht_get(t, "k", 1, buf, sizeof buf, &len), SHMHT_OK);
  CHECK(len == 7 && memcmp(buf, "value-2", 7) == 0);

  CHECK_RC(shmht_insert(t, "k", 1, "x", 1), SHMHT_KEY_EXISTS);
  CHECK_RC(shmht_get(t, "k", 1, buf, sizeof buf, &len), SHMHT_OK);
  CHECK(len == 7); /* the failed insert changed nothing */
  CHECK_RC(shmht_insert(t, "new", 3, "", 0), SHMHT_OK);
  CHECK_RC(shmht_get(t, "new", 3, buf, sizeof buf, &len), SHMHT_OK);
  CHECK(len == 0); /* an empty value is a value */
  CHECK_RC(shmht_put(t, "nul", 3, NULL, 0), SHMHT_OK); /* NULL with length 0: empty */

  /* Binary keys and values: embedded NUL bytes. */
  CHECK_RC(shmht_put(t, "a\0b", 3, "\0\1\2", 3), SHMHT_OK);
  CHECK_RC(shmht_get(t, "a\0b", 3, buf, sizeof buf, &len), SHMHT_OK);
  CHECK(len == 3 && memcmp(buf, "\0\1\2", 3) == 0);
  CHECK_RC(shmht_get(t, "a", 1, buf, sizeof buf, &len), SHMHT_NOT_FOUND);

  uint64_t size = 0;
  CHECK_RC(shmht_size(t, &size), SHMHT_OK);
  CHECK(size == 4);
  CHECK_RC(shmht_del(t, "k", 1), SHMHT_OK);
  CHECK_RC(shmht_del(t, "k", 1), SHMHT_NOT_FOUND);
  CHECK_RC(shmht_get(t, "k", 1, buf, sizeof buf, &len), SHMHT_NOT_FOUND);
  CHECK_RC(shmht_size(t, &size), SHMHT_OK);
  CHECK(size == 3);

  shmht_stats st;
  st.struct_size = sizeof st;
  CHECK_RC(shmht_stats_get(t, &st), SHMHT_OK);
  CHECK(st.engine == engine);
  CHECK(st.items == 3);
  CHECK(st.max_key_bytes == 16 && st.max_value_bytes == 64 && st.max_processes == 8);
  CHECK(st.capacity >= 1024);
  CHECK(st.slot_array_bytes > 0 && st.growths == 0 && st.migrating == 0);

  /* Past its starting capacity the table grows, and says so. */
  char key[32];
  for (int i = 0; i < 5000; ++i) {
    const int n = snprintf(key, sizeof key, "grow-%d", i);
    CHECK_RC(shmht_put(t, key, (size_t)n, "v", 1), SHMHT_OK);
  }
  const uint64_t first_array = st.slot_array_bytes;
  CHECK_RC(shmht_stats_get(t, &st), SHMHT_OK);
  CHECK(st.items == 5003 && st.growths >= 1 && st.slot_array_bytes > first_array);

  shmht_close(t);
  CHECK_RC(shmht_unlink(name), SHMHT_OK);
}

/* A value longer than the buffer: a clear code, the needed length, nothing lost. */
static void test_buffer_too_small(void) {
  char name[64];
  new_name(name);
  shmht_table *t = open_small(name, SHMHT_ENGINE_ACTIVE);
  if (t == NULL) return;
  char buf[64];
  size_t len = 0;
  CHECK_RC(shmht_put(t, "k", 1, "0123456789", 10), SHMHT_OK);

  CHECK_RC(shmht_get(t, "k", 1, buf, 4, &len), SHMHT_BUFFER_TOO_SMALL);
  CHECK(len == 10);
  CHECK(strstr(shmht_last_error(), "10 bytes") != NULL);
  CHECK_RC(shmht_get(t, "k", 1, NULL, 0, &len), SHMHT_BUFFER_TOO_SMALL); /* a length query */
  CHECK(len == 10);
  CHECK_RC(shmht_get(t, "k", 1, buf, len, &len), SHMHT_OK);
  CHECK(len == 10 && memcmp(buf, "0123456789", 10) == 0);

  /* take with a short buffer removes nothing */
  CHECK_RC(shmht_take(t, "k", 1, buf, 9, &len), SHMHT_BUFFER_TOO_SMALL);
  CHECK(len == 10);
  CHECK_RC(shmht_get(t, "k", 1, buf, sizeof buf, &len), SHMHT_OK);
  CHECK(len == 10);

  shmht_close(t);
  CHECK_RC(shmht_unlink(name), SHMHT_OK);
}

static void test_take(void) {
  char name[64];
  new_name(name);
  shmht_table *t = open_small(name, SHMHT_ENGINE_ACTIVE);
  if (t == NULL) return;
  char buf[64];
  size_t len = 0;
  CHECK_RC(shmht_take(t, "job", 3, buf, sizeof buf, &len), SHMHT_NOT_FOUND);
  CHECK_RC(shmht_put(t, "job", 3, "payload", 7), SHMHT_OK);
  CHECK_RC(shmht_take(t, "job", 3, buf, sizeof buf, &len), SHMHT_OK);
  CHECK(len == 7 && memcmp(buf, "payload", 7) == 0);
  CHECK_RC(shmht_get(t, "job", 3, buf, sizeof buf, &len), SHMHT_NOT_FOUND);
  CHECK_RC(shmht_put(t, "empty", 5, "", 0), SHMHT_OK);
  CHECK_RC(shmht_take(t, "empty", 5, NULL, 0, &len), SHMHT_OK); /* an empty value fits in 0 bytes */
  CHECK(len == 0);
  shmht_close(t);
  CHECK_RC(shmht_unlink(name), SHMHT_OK);
}

/* take_any hands out every item exactly once, then SHMHT_NOT_FOUND; the bytes it returns
 * stay valid until the next call. */
static void test_take_any(uint32_t engine) {
  char name[64];
  new_name(name);
  shmht_table *t = open_small(name, engine);
  if (t == NULL) return;
  const void *key = NULL, *value = NULL;
  size_t klen = 0, vlen = 0;
  CHECK_RC(shmht_take_any(t, &key, &klen, &value, &vlen), SHMHT_NOT_FOUND);
  enum { kItems = 300 };
  for (int i = 0; i < kItems; ++i) {
    char k[16], v[16];
    int kl = snprintf(k, sizeof k, "job%d", i), vl = snprintf(v, sizeof v, "v%d", i);
    CHECK_RC(shmht_put(t, k, (size_t)kl, v, (size_t)vl), SHMHT_OK);
  }
  static char seen[kItems];
  memset(seen, 0, sizeof seen);
  int taken = 0;
  while (shmht_take_any(t, &key, &klen, &value, &vlen) == SHMHT_OK) {
    char k[16] = {0}, v[16] = {0};
    CHECK(klen < sizeof k && vlen < sizeof v);
    if (klen >= sizeof k || vlen >= sizeof v) break;
    memcpy(k, key, klen);
    memcpy(v, value, vlen);
    int i = -1;
    CHECK(sscanf(k, "job%d", &i) == 1 && i >= 0 && i < kItems);
    if (i < 0 || i >= kItems) break;
    CHECK(!seen[i]);
    seen[i] = 1;
    char expected[16];
    snprintf(expected, sizeof expected, "v%d", i);
    CHECK(strcmp(v, expected) == 0);
    ++taken;
  }
  CHECK(taken == kItems);
  uint64_t size = 1;
  CHECK_RC(shmht_size(t, &size), SHMHT_OK);
  CHECK(size == 0);
  CHECK_RC(shmht_take_any(NULL, &key, &klen, &value, &vlen), SHMHT_INVALID_ARGUMENT);
  CHECK_RC(shmht_take_any(t, NULL, &klen, &value, &vlen), SHMHT_INVALID_ARGUMENT);
  shmht_close(t);
  CHECK_RC(shmht_unlink(name), SHMHT_OK);
}

static void test_add(void) {
  char name[64];
  new_name(name);
  shmht_table *t = open_small(name, SHMHT_ENGINE_ACTIVE);
  if (t == NULL) return;
  int64_t result = 0;
  CHECK_RC(shmht_add(t, "c", 1, 5, &result), SHMHT_OK);
  CHECK(result == 5);
  CHECK_RC(shmht_add(t, "c", 1, -7, &result), SHMHT_OK);
  CHECK(result == -2);
  CHECK_RC(shmht_add(t, "c", 1, 2, NULL), SHMHT_OK); /* result may be NULL */
  CHECK_RC(shmht_add(t, "c", 1, 0, &result), SHMHT_OK);
  CHECK(result == 0);

  CHECK_RC(shmht_add(t, "c", 1, INT64_MAX, &result), SHMHT_OK);
  CHECK_RC(shmht_add(t, "c", 1, 1, &result), SHMHT_COUNTER_OVERFLOW);
  CHECK_RC(shmht_add(t, "c", 1, 0, &result), SHMHT_OK);
  CHECK(result == INT64_MAX); /* the overflow changed nothing */

  CHECK_RC(shmht_put(t, "text", 4, "abc", 3), SHMHT_OK);
  CHECK_RC(shmht_add(t, "text", 4, 1, &result), SHMHT_NOT_A_COUNTER);
  char buf[8];
  size_t len = 0;
  CHECK_RC(shmht_get(t, "text", 4, buf, sizeof buf, &len), SHMHT_OK);
  CHECK(len == 3 && memcmp(buf, "abc", 3) == 0);
  shmht_close(t);
  CHECK_RC(shmht_unlink(name), SHMHT_OK);
}

/* NULL means absent; an empty value (non-NULL, length 0) is a value. */
static void test_cas(void) {
  char name[64];
  new_name(name);
  shmht_table *t = open_small(name, SHMHT_ENGINE_ACTIVE);
  if (t == NULL) return;
  char buf[64];
  size_t len = 0;
  CHECK_RC(shmht_cas(t, "k", 1, "", 0, "v", 1), SHMHT_CAS_MISMATCH); /* expected empty, key absent */
  CHECK_RC(shmht_get(t, "k", 1, buf, sizeof buf, &len), SHMHT_NOT_FOUND);
  CHECK_RC(shmht_cas(t, "k", 1, NULL, 0, "", 0), SHMHT_OK); /* insert the empty value */
  CHECK_RC(shmht_get(t, "k", 1, buf, sizeof buf, &len), SHMHT_OK);
  CHECK(len == 0);
  CHECK_RC(shmht_cas(t, "k", 1, NULL, 0, "x", 1), SHMHT_CAS_MISMATCH); /* present now */
  CHECK_RC(shmht_cas(t, "k", 1, "", 0, "v1", 2), SHMHT_OK);
  CHECK_RC(shmht_cas(t, "k", 1, "v0", 2, "v2", 2), SHMHT_CAS_MISMATCH);
  CHECK_RC(shmht_get(t, "k", 1, buf, sizeof buf, &len), SHMHT_OK);
  CHECK(len == 2 && memcmp(buf, "v1", 2) == 0);
  CHECK_RC(shmht_cas(t, "k", 1, "v1", 2, NULL, 0), SHMHT_OK); /* erase */
  CHECK_RC(shmht_get(t, "k", 1, buf, sizeof buf, &len), SHMHT_NOT_FOUND);
  CHECK_RC(shmht_cas(t, "k", 1, NULL, 0, NULL, 0), SHMHT_OK); /* absent stays absent */
  shmht_close(t);
  CHECK_RC(shmht_unlink(name), SHMHT_OK);
}

/* Every item once; an early stop; the iterator's copies outlive writes to the table. */
static void test_iterator(uint32_t engine) {
  char name[64];
  new_name(name);
  shmht_table *t = open_small(name, engine);
  if (t == NULL) return;
  enum { kItems = 300 };
  int seen[kItems];
  memset(seen, 0, sizeof seen);
  for (int i = 0; i < kItems; ++i) {
    char key[16], value[16];
    int klen = snprintf(key, sizeof key, "key%d", i);
    int vlen = snprintf(value, sizeof value, "value%d", i);
    CHECK_RC(shmht_put(t, key, (size_t)klen, value, (size_t)vlen), SHMHT_OK);
  }
  shmht_iter *it = NULL;
  CHECK_RC(shmht_iter_open(t, &it), SHMHT_OK);
  const void *k, *v;
  size_t klen, vlen;
  int count = 0, rc;
  while ((rc = shmht_iter_next(it, &k, &klen, &v, &vlen)) == SHMHT_OK) {
    char key[16], value[16];
    CHECK(klen < sizeof key && vlen < sizeof value);
    memcpy(key, k, klen);
    key[klen] = '\0';
    memcpy(value, v, vlen);
    value[vlen] = '\0';
    int i = atoi(key + 3);
    CHECK(i >= 0 && i < kItems && strcmp(value + 5, key + 3) == 0);
    if (i >= 0 && i < kItems) ++seen[i];
    ++count;
  }
  CHECK(rc == SHMHT_END);
  CHECK_RC(shmht_iter_next(it, &k, &klen, &v, &vlen), SHMHT_END); /* stays at the end */
  shmht_iter_close(it);
  CHECK(count == kItems);
  for (int i = 0; i < kItems; ++i) CHECK(seen[i] == 1);

  /* Stop after 3 items, erasing each as it is seen (writes during the walk are allowed). */
  CHECK_RC(shmht_iter_open(t, &it), SHMHT_OK);
  for (int n = 0; n < 3; ++n) {
    CHECK_RC(shmht_iter_next(it, &k, &klen, &v, &vlen), SHMHT_OK);
    CHECK_RC(shmht_del(t, k, klen), SHMHT_OK);
    CHECK(vlen >= 6 && memcmp(v, "value", 5) == 0); /* still readable after the erase */
  }
  shmht_iter_close(it);
  uint64_t size = 0;
  CHECK_RC(shmht_size(t, &size), SHMHT_OK);
  CHECK(size == kItems - 3);

  /* An empty table ends at once. */
  for (int i = 0; i < kItems; ++i) {
    char key[16];
    int klen2 = snprintf(key, sizeof key, "key%d", i);
    shmht_del(t, key, (size_t)klen2);
  }
  CHECK_RC(shmht_iter_open(t, &it), SHMHT_OK);
  CHECK_RC(shmht_iter_next(it, &k, &klen, &v, &vlen), SHMHT_END);
  shmht_iter_close(it);
  shmht_close(t);
  CHECK_RC(shmht_unlink(name), SHMHT_OK);
}

/* opts NULL creates with defaults; a second open attaches to the same table. */
static void test_open_defaults_and_flags(void) {
  char name[64];
  new_name(name);
  shmht_table *a = NULL, *b = NULL;
  CHECK_RC(shmht_open(name, NULL, &a), SHMHT_OK);
  CHECK_RC(shmht_open(name, NULL, &b), SHMHT_OK);
  if (a != NULL && b != NULL) {
    CHECK_RC(shmht_put(a, "shared", 6, "yes", 3), SHMHT_OK);
    char buf[8];
    size_t len = 0;
    CHECK_RC(shmht_get(b, "shared", 6, buf, sizeof buf, &len), SHMHT_OK);
    CHECK(len == 3 && memcmp(buf, "yes", 3) == 0);
    shmht_stats st;
    st.struct_size = sizeof st;
    CHECK_RC(shmht_stats_get(b, &st), SHMHT_OK);
    CHECK(st.engine == SHMHT_ENGINE_SEQLOCK); /* the default engine */
    CHECK(st.max_key_bytes == 1024 && st.max_value_bytes == 65536 && st.max_processes == 128);
  }
  /* Unlinking a table this process is attached to is refused, naming the pid. */
  CHECK_RC(shmht_unlink(name), SHMHT_IN_USE);
  char pid[32];
  snprintf(pid, sizeof pid, "%ld", (long)getpid());
  CHECK(strstr(shmht_last_error(), pid) != NULL);

  /* EXCL on an existing name; open without CREATE of a missing one. */
  shmht_options o;
  shmht_options_init(&o);
  CHECK(o.struct_size == sizeof o && o.flags == SHMHT_OPEN_CREATE);
  o.flags = SHMHT_OPEN_CREATE | SHMHT_OPEN_EXCL;
  shmht_table *c = (shmht_table *)&o; /* garbage that a failed open must set to NULL */
  CHECK_RC(shmht_open(name, &o, &c), SHMHT_ALREADY_EXISTS);
  CHECK(c == NULL);
  o.flags = 0;
  CHECK_RC(shmht_open("shmht-c-api-no-such-table", &o, &c), SHMHT_NO_SUCH_TABLE);
  CHECK(c == NULL);
  CHECK(strstr(shmht_last_error(), "shmht-c-api-no-such-table") != NULL);

  shmht_close(a);
  shmht_close(b);
  CHECK_RC(shmht_unlink(name), SHMHT_OK);
  CHECK_RC(shmht_unlink(name), SHMHT_NO_SUCH_TABLE);
  CHECK_RC(shmht_unlink_force(name), SHMHT_NO_SUCH_TABLE);
}

/* Opening with another engine while a handle is attached is refused; unattached, it switches. */
static void test_wrong_engine(void) {
  char name[64];
  new_name(name);
  shmht_table *t = open_small(name, SHMHT_ENGINE_GLOBAL);
  if (t == NULL) return;
  shmht_options o;
  shmht_options_init(&o);
  o.engine = SHMHT_ENGINE_LOCKFREE;
  shmht_table *u = NULL;
  CHECK_RC(shmht_open(name, &o, &u), SHMHT_ENGINE_MISMATCH);
  CHECK(u == NULL);
  CHECK(strstr(shmht_last_error(), "global") != NULL);
  shmht_table *same = NULL;
  o.engine = SHMHT_ENGINE_ACTIVE; /* the table's engine: fine */
  CHECK_RC(shmht_open(name, &o, &same), SHMHT_OK);
  shmht_stats st;
  st.struct_size = sizeof st;
  if (same != NULL) {
    CHECK_RC(shmht_stats_get(same, &st), SHMHT_OK);
    CHECK(st.engine == SHMHT_ENGINE_GLOBAL);
  }
  shmht_close(same);
  o.engine = 99;
  CHECK_RC(shmht_open(name, &o, &u), SHMHT_INVALID_ARGUMENT);
  CHECK(strstr(shmht_last_error(), "engine 99") != NULL);
  shmht_close(t);
  /* Nobody attached: opening with another engine switches the table. */
  o.engine = SHMHT_ENGINE_STRIPED;
  CHECK_RC(shmht_open(name, &o, &u), SHMHT_OK);
  if (u != NULL) {
    CHECK_RC(shmht_stats_get(u, &st), SHMHT_OK);
    CHECK(st.engine == SHMHT_ENGINE_STRIPED);
  }
  shmht_close(u);
  CHECK_RC(shmht_unlink(name), SHMHT_OK);
}

static void test_oversize_arguments(void) {
  char name[64];
  new_name(name);
  shmht_table *t = open_small(name, SHMHT_ENGINE_ACTIVE); /* keys <= 16, values <= 64 bytes */
  if (t == NULL) return;
  char big[100];
  memset(big, 'x', sizeof big);
  char buf[8];
  size_t len = 0;
  CHECK_RC(shmht_put(t, big, 17, "v", 1), SHMHT_KEY_TOO_LARGE);
  CHECK(strstr(shmht_last_error(), "17") != NULL && strstr(shmht_last_error(), "16") != NULL);
  CHECK_RC(shmht_insert(t, big, 17, "v", 1), SHMHT_KEY_TOO_LARGE);
  CHECK_RC(shmht_add(t, big, 17, 1, NULL), SHMHT_KEY_TOO_LARGE);
  CHECK_RC(shmht_put(t, "k", 1, big, 65), SHMHT_VALUE_TOO_LARGE);
  CHECK_RC(shmht_cas(t, "k", 1, NULL, 0, big, 65), SHMHT_VALUE_TOO_LARGE);
  /* Lookups of a key that cannot be in the table find it absent. */
  CHECK_RC(shmht_get(t, big, 17, buf, sizeof buf, &len), SHMHT_NOT_FOUND);
  CHECK_RC(shmht_del(t, big, 17), SHMHT_NOT_FOUND);
  CHECK_RC(shmht_take(t, big, 17, buf, sizeof buf, &len), SHMHT_NOT_FOUND);
  uint64_t size = 1;
  CHECK_RC(shmht_size(t, &size), SHMHT_OK);
  CHECK(size == 0);

  /* Options out of range are named. */
  shmht_options o;
  shmht_options_init(&o);
  o.max_key_bytes = 0;
  shmht_table *u = NULL;
  char other[64];
  new_name(other);
  CHECK_RC(shmht_open(other, &o, &u), SHMHT_INVALID_ARGUMENT);
  CHECK(strstr(shmht_last_error(), "max_key_bytes") != NULL);
  shmht_close(t);
  CHECK_RC(shmht_unlink(name), SHMHT_OK);
}

/* NULL handles, keys and out-parameters: SHMHT_INVALID_ARGUMENT, never a crash. */
static void test_null_arguments(void) {
  char name[64];
  new_name(name);
  shmht_table *t = open_small(name, SHMHT_ENGINE_ACTIVE);
  if (t == NULL) return;
  char buf[8];
  size_t len;
  int64_t n;
  uint64_t size;
  shmht_table *u;
  shmht_iter *it;
  const void *k, *v;
  size_t kl, vl;
  CHECK_RC(shmht_open(NULL, NULL, &u), SHMHT_INVALID_ARGUMENT);
  CHECK_RC(shmht_open(name, NULL, NULL), SHMHT_INVALID_ARGUMENT);
  CHECK_RC(shmht_put(NULL, "k", 1, "v", 1), SHMHT_INVALID_ARGUMENT);
  CHECK(strstr(shmht_last_error(), "NULL") != NULL);
  CHECK_RC(shmht_put(t, NULL, 1, "v", 1), SHMHT_INVALID_ARGUMENT);
  CHECK(strstr(shmht_last_error(), "key is NULL") != NULL);
  CHECK_RC(shmht_put(t, "k", 1, NULL, 1), SHMHT_INVALID_ARGUMENT);
  CHECK_RC(shmht_insert(NULL, "k", 1, "v", 1), SHMHT_INVALID_ARGUMENT);
  CHECK_RC(shmht_get(NULL, "k", 1, buf, sizeof buf, &len), SHMHT_INVALID_ARGUMENT);
  CHECK_RC(shmht_get(t, "k", 1, buf, sizeof buf, NULL), SHMHT_INVALID_ARGUMENT);
  CHECK_RC(shmht_get(t, "k", 1, NULL, 8, &len), SHMHT_INVALID_ARGUMENT);
  CHECK_RC(shmht_del(NULL, "k", 1), SHMHT_INVALID_ARGUMENT);
  CHECK_RC(shmht_take(NULL, "k", 1, buf, sizeof buf, &len), SHMHT_INVALID_ARGUMENT);
  CHECK_RC(shmht_take(t, "k", 1, buf, sizeof buf, NULL), SHMHT_INVALID_ARGUMENT);
  CHECK_RC(shmht_add(NULL, "k", 1, 1, &n), SHMHT_INVALID_ARGUMENT);
  CHECK_RC(shmht_cas(NULL, "k", 1, NULL, 0, "v", 1), SHMHT_INVALID_ARGUMENT);
  CHECK_RC(shmht_size(NULL, &size), SHMHT_INVALID_ARGUMENT);
  CHECK_RC(shmht_size(t, NULL), SHMHT_INVALID_ARGUMENT);
  CHECK_RC(shmht_stats_get(t, NULL), SHMHT_INVALID_ARGUMENT);
  shmht_stats st;
  st.struct_size = 0;
  CHECK_RC(shmht_stats_get(t, &st), SHMHT_INVALID_ARGUMENT);
  CHECK_RC(shmht_iter_open(NULL, &it), SHMHT_INVALID_ARGUMENT);
  CHECK_RC(shmht_iter_open(t, NULL), SHMHT_INVALID_ARGUMENT);
  CHECK_RC(shmht_iter_next(NULL, &k, &kl, &v, &vl), SHMHT_INVALID_ARGUMENT);
  CHECK_RC(shmht_iter_open(t, &it), SHMHT_OK);
  CHECK_RC(shmht_iter_next(it, NULL, &kl, &v, &vl), SHMHT_INVALID_ARGUMENT);
  shmht_iter_close(it);
  CHECK_RC(shmht_unlink(NULL), SHMHT_INVALID_ARGUMENT);
  CHECK_RC(shmht_unlink_force(NULL), SHMHT_INVALID_ARGUMENT);
  shmht_close(NULL);      /* ignored */
  shmht_iter_close(NULL); /* ignored */
  shmht_options_init(NULL);

  /* A struct_size this library does not know is refused, not read past. */
  shmht_options o;
  shmht_options_init(&o);
  o.struct_size = sizeof o + 8;
  CHECK_RC(shmht_open(name, &o, &u), SHMHT_INVALID_ARGUMENT);
  CHECK(strstr(shmht_last_error(), "struct_size") != NULL);
  shmht_options_init(&o);
  o.flags = 1u << 20;
  CHECK_RC(shmht_open(name, &o, &u), SHMHT_INVALID_ARGUMENT);
  o.flags = SHMHT_OPEN_CREATE | SHMHT_OPEN_READ_ONLY;
  CHECK_RC(shmht_open(name, &o, &u), SHMHT_INVALID_ARGUMENT);
  shmht_close(t);
  CHECK_RC(shmht_unlink(name), SHMHT_OK);
}

/* A read-only handle reads; its writes fail with SHMHT_PERMISSION_DENIED. */
static void test_read_only(void) {
  char name[64];
  new_name(name);
  shmht_table *t = open_small(name, SHMHT_ENGINE_SEQLOCK);
  if (t == NULL) return;
  CHECK_RC(shmht_put(t, "k", 1, "v", 1), SHMHT_OK);
  shmht_options o;
  shmht_options_init(&o);
  o.flags = SHMHT_OPEN_READ_ONLY;
  shmht_table *r = NULL;
  CHECK_RC(shmht_open(name, &o, &r), SHMHT_OK);
  if (r != NULL) {
    char buf[8];
    size_t len = 0;
    CHECK_RC(shmht_get(r, "k", 1, buf, sizeof buf, &len), SHMHT_OK);
    CHECK(len == 1 && buf[0] == 'v');
    CHECK_RC(shmht_put(r, "k", 1, "w", 1), SHMHT_PERMISSION_DENIED);
    /* Every write is refused before it looks at the key: present or absent, the answer
       is PERMISSION_DENIED naming the call, and take leaves the caller's buffer alone. */
    const char *keys[] = {"k", "absent"};
    for (size_t i = 0; i < 2; ++i) {
      const char *k = keys[i];
      const size_t kl = strlen(k);
      memset(buf, '#', sizeof buf);
      len = 99;
      CHECK_RC(shmht_take(r, k, kl, buf, sizeof buf, &len), SHMHT_PERMISSION_DENIED);
      CHECK(strstr(shmht_last_error(), "shmht_take") != NULL);
      CHECK(buf[0] == '#' && len == 99);
      CHECK_RC(shmht_del(r, k, kl), SHMHT_PERMISSION_DENIED);
      CHECK_RC(shmht_cas(r, k, kl, "v", 1, NULL, 0), SHMHT_PERMISSION_DENIED);
      CHECK_RC(shmht_cas(r, k, kl, NULL, 0, NULL, 0), SHMHT_PERMISSION_DENIED);
      CHECK_RC(shmht_insert(r, k, kl, "w", 1), SHMHT_PERMISSION_DENIED);
      CHECK_RC(shmht_add(r, k, kl, 1, NULL), SHMHT_PERMISSION_DENIED);
    }
    const void *tk, *tv;
    size_t tkl, tvl;
    CHECK_RC(shmht_take_any(r, &tk, &tkl, &tv, &tvl), SHMHT_PERMISSION_DENIED);
    CHECK_RC(shmht_get(r, "k", 1, buf, sizeof buf, &len), SHMHT_OK); /* nothing was taken */
    CHECK(len == 1 && buf[0] == 'v');
  }
  shmht_close(r);
  shmht_close(t);
  CHECK_RC(shmht_unlink(name), SHMHT_OK);
}

/* An iterator whose table was closed reports SHMHT_INVALID_ARGUMENT instead of reading
   the unmapped table; shmht_iter_close still frees it. */
static void test_iterator_outlives_table(void) {
  char name[64];
  new_name(name);
  shmht_table *t = open_small(name, SHMHT_ENGINE_STRIPED);
  if (t == NULL) return;
  for (int i = 0; i < 50; ++i) {
    char k[8];
    const int n = snprintf(k, sizeof k, "k%d", i);
    CHECK_RC(shmht_put(t, k, (size_t)n, "v", 1), SHMHT_OK);
  }
  shmht_iter *it = NULL, *unused = NULL;
  CHECK_RC(shmht_iter_open(t, &it), SHMHT_OK);
  CHECK_RC(shmht_iter_open(t, &unused), SHMHT_OK);
  const void *kp, *vp;
  size_t kl, vl;
  CHECK_RC(shmht_iter_next(it, &kp, &kl, &vp, &vl), SHMHT_OK);
  shmht_close(t);
  CHECK_RC(shmht_iter_next(it, &kp, &kl, &vp, &vl), SHMHT_INVALID_ARGUMENT);
  CHECK(strstr(shmht_last_error(), "closed") != NULL);
  CHECK_RC(shmht_iter_next(unused, &kp, &kl, &vp, &vl), SHMHT_INVALID_ARGUMENT);
  shmht_iter_close(it);
  shmht_iter_close(unused);
  CHECK_RC(shmht_unlink(name), SHMHT_OK);
}

/* SHMHT_OPEN_TRUST_FOREIGN_OWNER holds with SHMHT_OPEN_CREATE too, whatever the engine
   option: a table whose file another user owns opens when the flag says so. Needs root to
   give the file to another user (uid 65534); skipped otherwise. */
static void test_trust_foreign_owner_with_create(void) {
  if (getuid() != 0) {
    printf("c_api: skipping the foreign-owner test (not root)\n");
    return;
  }
  char name[64], path[96];
  new_name(name);
  shmht_table *t = open_small(name, SHMHT_ENGINE_SEQLOCK);
  if (t == NULL) return;
  shmht_close(t);
  snprintf(path, sizeof path, "/dev/shm/%s", name);
  CHECK(chown(path, 65534, 65534) == 0);
  const uint32_t engines[] = {SHMHT_ENGINE_ACTIVE, SHMHT_ENGINE_SEQLOCK};
  for (size_t e = 0; e < 2; ++e) {
    shmht_options o;
    shmht_options_init(&o);
    o.engine = engines[e];
    o.flags = SHMHT_OPEN_CREATE;
    shmht_table *u = NULL;
    CHECK_RC(shmht_open(name, &o, &u), SHMHT_PERMISSION_DENIED); /* no opt-in: refused */
    o.flags = SHMHT_OPEN_CREATE | SHMHT_OPEN_TRUST_FOREIGN_OWNER;
    CHECK_RC(shmht_open(name, &o, &u), SHMHT_OK);
    shmht_close(u);
  }
  CHECK_RC(shmht_unlink(name), SHMHT_OK);
}

static void test_strerror(void) {
  const int codes[] = {SHMHT_OK, SHMHT_NOT_FOUND, SHMHT_KEY_EXISTS, SHMHT_CAS_MISMATCH, SHMHT_END,
                       SHMHT_KEY_TOO_LARGE, SHMHT_VALUE_TOO_LARGE, SHMHT_TABLE_FULL, SHMHT_NO_SPACE,
                       SHMHT_CORRUPT, SHMHT_VERSION_MISMATCH, SHMHT_ENGINE_MISMATCH, SHMHT_ENGINE_UNAVAILABLE,
                       SHMHT_PERMISSION_DENIED, SHMHT_NO_SUCH_TABLE, SHMHT_ALREADY_EXISTS,
                       SHMHT_TOO_MANY_PROCESSES, SHMHT_IN_USE, SHMHT_INVALID_ARGUMENT, SHMHT_SYSTEM,
                       SHMHT_NOT_A_COUNTER, SHMHT_COUNTER_OVERFLOW, SHMHT_BUFFER_TOO_SMALL,
                       SHMHT_OUT_OF_MEMORY, SHMHT_INTERNAL};
  const size_t n = sizeof codes / sizeof codes[0];
  for (size_t i = 0; i < n; ++i) {
    const char *s = shmht_strerror(codes[i]);
    CHECK(s != NULL && strcmp(s, shmht_strerror(12345)) != 0);
    for (size_t j = 0; j < i; ++j) CHECK(strcmp(s, shmht_strerror(codes[j])) != 0); /* distinct */
  }
  CHECK(strcmp(shmht_strerror(SHMHT_NOT_FOUND), "key absent") == 0);
  CHECK(strcmp(shmht_strerror(SHMHT_NO_SUCH_TABLE), "no table of that name") == 0);
}

/* Processes share a table: children add to one counter and take distinct jobs; the
 * parent checks that every increment landed and that no job was taken twice or lost. */
static void test_processes_share_a_table(void) {
  enum { kChildren = 4, kJobs = 200, kAdds = 500 };
  char name[64];
  new_name(name);
  const char *table_name = name;
  shmht_table *t = open_small(table_name, SHMHT_ENGINE_ACTIVE);
  if (t == NULL) return;
  for (int j = 0; j < kJobs; ++j) {
    char key[16];
    int klen = snprintf(key, sizeof key, "job%d", j);
    CHECK_RC(shmht_put(t, key, (size_t)klen, key, (size_t)klen), SHMHT_OK);
  }
  fflush(stderr);
  pid_t pids[kChildren];
  for (int c = 0; c < kChildren; ++c) {
    pids[c] = fork();
    if (pids[c] == 0) {
      alarm(60); /* a stuck child dies instead of hanging the test */
      /* The parent's handle is not for the child: a clear error, not a corrupted table. */
      if (shmht_put(t, "inherited", 9, "x", 1) != SHMHT_INVALID_ARGUMENT) _exit(102);
      shmht_table *ct = NULL;
      if (shmht_open(table_name, NULL, &ct) != SHMHT_OK) _exit(100);
      int bad = 0;
      for (int i = 0; i < kAdds; ++i) bad |= shmht_add(ct, "count", 5, 1, NULL) != SHMHT_OK;
      /* Take every job this child can; record what it took under taken:<job>. */
      for (int j = 0; j < kJobs; ++j) {
        char key[16], buf[16], mark[32];
        size_t len = 0;
        int klen = snprintf(key, sizeof key, "job%d", j);
        int rc = shmht_take(ct, key, (size_t)klen, buf, sizeof buf, &len);
        if (rc == SHMHT_OK) {
          int mlen = snprintf(mark, sizeof mark, "taken:%.*s", (int)len, buf);
          bad |= shmht_insert(ct, mark, (size_t)mlen, "", 0) != SHMHT_OK; /* KEY_EXISTS: taken twice */
        } else if (rc != SHMHT_NOT_FOUND) {
          bad = 1;
        }
      }
      shmht_close(ct);
      _exit(bad ? 101 : 0);
    }
    CHECK(pids[c] > 0);
  }
  size_t count_len = 0;
  for (int c = 0; c < kChildren; ++c) {
    int status = 0;
    if (pids[c] <= 0) continue;
    CHECK(waitpid(pids[c], &status, 0) == pids[c]);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  int64_t count = 0;
  CHECK_RC(shmht_get(t, "inherited", 9, NULL, 0, &count_len), SHMHT_NOT_FOUND);
  CHECK_RC(shmht_add(t, "count", 5, 0, &count), SHMHT_OK);
  CHECK(count == (int64_t)kChildren * kAdds);
  char buf[16];
  size_t len;
  for (int j = 0; j < kJobs; ++j) {
    char key[16], mark[32];
    int klen = snprintf(key, sizeof key, "job%d", j);
    int mlen = snprintf(mark, sizeof mark, "taken:%s", key);
    CHECK_RC(shmht_get(t, key, (size_t)klen, buf, sizeof buf, &len), SHMHT_NOT_FOUND); /* all taken */
    CHECK_RC(shmht_get(t, mark, (size_t)mlen, buf, sizeof buf, &len), SHMHT_OK);       /* exactly once */
  }
  shmht_close(t);
  CHECK_RC(shmht_unlink(table_name), SHMHT_OK);
}

/* No /dev/shm file of this process's tables is left. */
static void check_no_leftovers(void) {
  char prefix[64];
  snprintf(prefix, sizeof prefix, "shmht-c-api-%ld-", (long)getpid());
  DIR *dir = opendir("/dev/shm");
  if (dir == NULL) return;
  struct dirent *e;
  while ((e = readdir(dir)) != NULL) {
    if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) {
      fprintf(stderr, "left behind: /dev/shm/%s\n", e->d_name);
      ++failures;
    }
  }
  closedir(dir);
}

int main(void) {
  alarm(120);
  const uint32_t engines[] = {SHMHT_ENGINE_GLOBAL, SHMHT_ENGINE_STRIPED, SHMHT_ENGINE_SEQLOCK, SHMHT_ENGINE_LOCKFREE};
  for (size_t e = 0; e < sizeof engines / sizeof engines[0]; ++e) {
    test_basic_operations(engines[e]);
    test_iterator(engines[e]);
    test_take_any(engines[e]);
  }
  test_buffer_too_small();
  test_take();
  test_add();
  test_cas();
  test_open_defaults_and_flags();
  test_wrong_engine();
  test_oversize_arguments();
  test_null_arguments();
  test_read_only();
  test_iterator_outlives_table();
  test_trust_foreign_owner_with_create();
  test_strerror();
  test_processes_share_a_table();
  check_no_leftovers();
  if (failures != 0) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  printf("c_api: all checks passed\n");
  return 0;
}
