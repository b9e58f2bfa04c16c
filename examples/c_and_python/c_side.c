/* c_side.c - the C half of examples/c_and_python (README.md there): a C process and a
 * Python process sharing one table in /dev/shm through shmht.h.
 *
 *   c_side NAME write   create the table, store a greeting and three jobs, count a visit
 *   c_side NAME read    print what the Python side wrote, then delete the table
 *
 * Build: cc -std=c11 -Wall -Werror c_side.c $(pkg-config --cflags --libs shmht) -o c_side */
#include <shmht.h>

#include <stdio.h>
#include <string.h>

/* Prints the failed call's code and this thread's message, and returns 1. */
static int report(const char *what, int rc) {
  fprintf(stderr, "c_side: %s: %s (%s)\n", what, shmht_strerror(rc), shmht_last_error());
  return 1;
}

static int put_str(shmht_table *t, const char *key, const char *value) {
  return shmht_put(t, key, strlen(key), value, strlen(value));
}

static int write_side(const char *name) {
  shmht_options opts;
  shmht_options_init(&opts); /* create if missing, default engine */
  opts.capacity = 1000;
  shmht_table *t;
  int rc = shmht_open(name, &opts, &t);
  if (rc != SHMHT_OK) return report("open", rc);

  if ((rc = put_str(t, "greeting", "hello from C")) != SHMHT_OK) return report("put greeting", rc);
  for (int i = 1; i <= 3; ++i) {
    char key[16], value[32];
    snprintf(key, sizeof key, "job:%d", i);
    snprintf(value, sizeof value, "resize image %d", i);
    if ((rc = put_str(t, key, value)) != SHMHT_OK) return report("put job", rc);
  }
  int64_t visits = 0;
  if ((rc = shmht_add(t, "visits", 6, 1, &visits)) != SHMHT_OK) return report("add", rc);

  /* Read back, and show a delete: a scratch key that the Python side never sees. */
  char buf[64];
  size_t len;
  if ((rc = shmht_get(t, "greeting", 8, buf, sizeof buf, &len)) != SHMHT_OK) return report("get", rc);
  if ((rc = put_str(t, "scratch", "temporary")) != SHMHT_OK) return report("put scratch", rc);
  if ((rc = shmht_del(t, "scratch", 7)) != SHMHT_OK) return report("del", rc);
  if (shmht_get(t, "scratch", 7, buf, sizeof buf, &len) != SHMHT_NOT_FOUND) return report("get deleted", rc);

  uint64_t items = 0;
  shmht_size(t, &items);
  printf("c_side: wrote greeting, 3 jobs and visits=%lld into /dev/shm/%s (%llu items)\n", (long long)visits, name,
         (unsigned long long)items);
  shmht_close(t);
  return 0;
}

static int read_side(const char *name) {
  shmht_options opts;
  shmht_options_init(&opts);
  opts.flags = 0; /* open only: the write step made it */
  shmht_table *t;
  int rc = shmht_open(name, &opts, &t);
  if (rc != SHMHT_OK) return report("open", rc);

  char buf[256];
  size_t len;
  rc = shmht_get(t, "reply", 5, buf, sizeof buf, &len);
  if (rc != SHMHT_OK) return report("get reply", rc);
  printf("c_side: python replied: %.*s\n", (int)len, buf);

  /* Everything left in the table, in no particular order. */
  shmht_iter *it;
  if ((rc = shmht_iter_open(t, &it)) != SHMHT_OK) return report("iter_open", rc);
  const void *key, *value;
  size_t klen, vlen;
  int jobs_left = 0;
  while (shmht_iter_next(it, &key, &klen, &value, &vlen) == SHMHT_OK) {
    if (klen > 4 && memcmp(key, "job:", 4) == 0) ++jobs_left;
  }
  shmht_iter_close(it);
  int64_t visits = 0;
  if ((rc = shmht_add(t, "visits", 6, 0, &visits)) != SHMHT_OK) return report("add", rc);
  printf("c_side: visits=%lld, jobs left=%d\n", (long long)visits, jobs_left);

  shmht_close(t); /* a table is unlinked once no process is attached */
  if ((rc = shmht_unlink(name)) != SHMHT_OK) return report("unlink", rc);
  printf("c_side: removed /dev/shm/%s\n", name);
  return jobs_left == 0 && visits == 2 ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[2], "write") == 0) return write_side(argv[1]);
  if (argc == 3 && strcmp(argv[2], "read") == 0) return read_side(argv[1]);
  fprintf(stderr, "usage: %s NAME write|read\n", argv[0]);
  return 2;
}
