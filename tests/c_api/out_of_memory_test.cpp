// out_of_memory_test.cpp - the C API's boundary under allocation failure: every call
// fails the n-th allocation it makes, for n = 0, 1, 2... until the call succeeds. Each
// failure must come back as SHMHT_OUT_OF_MEMORY (no exception crosses into C, and none
// terminates the process), leave no attachment or handle behind, and lose no value.
//
// A C++ test because it replaces operator new; it calls only the C API.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <new>
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "shmht.h"
#include "test_support.hpp"

namespace {

// Allocations the code under test may still make; -1: no limit (gtest's own allocations).
std::atomic<long> g_allocations_left{-1};

void* allocate(std::size_t size) {
  long left = g_allocations_left.load(std::memory_order_relaxed);
  if (left == 0) throw std::bad_alloc();
  if (left > 0) g_allocations_left.store(left - 1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}

// Runs call() with at most n allocations allowed, for n = 0, 1, ... until it returns
// something other than SHMHT_OUT_OF_MEMORY; `after_failure` checks the state after each
// failed attempt. Returns the final result.
template <typename Call, typename Check>
int with_failing_allocations(const char* what, Call call, Check after_failure) {
  for (long n = 0; n < 100'000; ++n) {
    g_allocations_left.store(n);
    const int rc = call();
    g_allocations_left.store(-1);
    if (rc != SHMHT_OUT_OF_MEMORY) {
      if (n == 0) std::printf("%s: %s; it allocates nothing\n", what, shmht_strerror(rc));
      else std::printf("%s: SHMHT_OUT_OF_MEMORY with 0..%ld allocations allowed, then %s\n", what, n - 1, shmht_strerror(rc));
      return rc;
    }
    EXPECT_STREQ(shmht_last_error(), "out of memory") << "after " << n << " allocations";
    after_failure();
  }
  ADD_FAILURE() << "the call never succeeded";
  return SHMHT_INTERNAL;
}

// File descriptors this process holds now: a failed open must close the ones it opened.
long open_fds() {
  const long saved = g_allocations_left.exchange(-1);  // counting allocates
  long n = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  g_allocations_left.store(saved);
  return n;
}

}  // namespace

void* operator new(std::size_t size) { return allocate(size); }
void* operator new[](std::size_t size) { return allocate(size); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace shmht::test {
namespace {

TEST(CApiOutOfMemory, EveryFailedAllocationIsACodeAndLosesNothing) {
  ScopedName name;
  shmht_options options;
  shmht_options_init(&options);
  options.capacity = 100;

  // Opening (creating, the first time): a failure leaves no handle.
  shmht_table* t = nullptr;
  const long fds = open_fds();
  int rc = with_failing_allocations("shmht_open (create)", [&] { return shmht_open(name.str().c_str(), &options, &t); },
                                    [&] {
                                      EXPECT_EQ(t, nullptr);
                                      EXPECT_EQ(open_fds(), fds) << "a failed shmht_open left a file descriptor open";
                                    });
  ASSERT_EQ(rc, SHMHT_OK) << shmht_last_error();
  ASSERT_NE(t, nullptr);

  // A store either happened or did not; the old value is never lost.
  ASSERT_EQ(shmht_put(t, "k", 1, "old", 3), SHMHT_OK);
  char buf[16];
  size_t len = 0;
  rc = with_failing_allocations("shmht_put", [&] { return shmht_put(t, "k", 1, "new", 3); }, [&] {
    ASSERT_EQ(shmht_get(t, "k", 1, buf, sizeof buf, &len), SHMHT_OK);
    EXPECT_TRUE(std::string(buf, len) == "old" || std::string(buf, len) == "new");
  });
  ASSERT_EQ(rc, SHMHT_OK) << shmht_last_error();

  // A take that fails leaves the value in the table.
  rc = with_failing_allocations("shmht_take", [&] { return shmht_take(t, "k", 1, buf, sizeof buf, &len); }, [&] {
    ASSERT_EQ(shmht_get(t, "k", 1, buf, sizeof buf, &len), SHMHT_OK) << "a failed take lost the value";
  });
  ASSERT_EQ(rc, SHMHT_OK) << shmht_last_error();
  EXPECT_EQ(std::string(buf, len), "new");

  // An iterator that fails to open leaves none.
  ASSERT_EQ(shmht_put(t, "a", 1, "1", 1), SHMHT_OK);
  shmht_iter* it = nullptr;
  rc = with_failing_allocations("shmht_iter_open", [&] { return shmht_iter_open(t, &it); }, [&] { EXPECT_EQ(it, nullptr); });
  ASSERT_EQ(rc, SHMHT_OK) << shmht_last_error();
  shmht_iter_close(it);

  // Opening an existing table under failing allocations, then closing: no attachment of
  // this process is left (shmht_unlink refuses while one is).
  shmht_table* second = nullptr;
  const long fds_with_t = open_fds();
  rc = with_failing_allocations("shmht_open (existing)", [&] { return shmht_open(name.str().c_str(), nullptr, &second); },
                                [&] {
                                  EXPECT_EQ(second, nullptr);
                                  EXPECT_EQ(open_fds(), fds_with_t) << "a failed shmht_open left a file descriptor open";
                                });
  ASSERT_EQ(rc, SHMHT_OK) << shmht_last_error();
  shmht_close(second);

  // take_any: every SHMHT_OUT_OF_MEMORY leaves the item in the table; every success hands
  // one over. Items are never lost or handed over twice.
  std::set<std::string> put_keys;
  for (int i = 0; i < 5; ++i) {
    const std::string key = "take-any-key-long-enough-for-heap-storage-" + std::to_string(i);
    ASSERT_EQ(shmht_put(t, key.data(), key.size(), "v", 1), SHMHT_OK);
    put_keys.insert(key);
  }
  uint64_t before = 0;
  ASSERT_EQ(shmht_size(t, &before), SHMHT_OK);
  std::multiset<std::string> taken;
  for (uint64_t i = 0; i < before; ++i) {
    const void *kp = nullptr, *vp = nullptr;
    size_t kl = 0, vl = 0;
    rc = with_failing_allocations("shmht_take_any", [&] { return shmht_take_any(t, &kp, &kl, &vp, &vl); }, [&] {
      uint64_t size = 0;
      ASSERT_EQ(shmht_size(t, &size), SHMHT_OK);
      EXPECT_EQ(size, before - i) << "a failed shmht_take_any lost an item";
    });
    ASSERT_EQ(rc, SHMHT_OK) << shmht_last_error();
    taken.insert(std::string(static_cast<const char*>(kp), kl));
  }
  uint64_t after = 0;
  ASSERT_EQ(shmht_size(t, &after), SHMHT_OK);
  EXPECT_EQ(after, 0u);
  EXPECT_EQ(taken.size(), std::set<std::string>(taken.begin(), taken.end()).size()) << "an item was handed over twice";
  for (const std::string& key : put_keys) EXPECT_EQ(taken.count(key), 1u) << key;
  shmht_close(t);
  EXPECT_EQ(shmht_unlink(name.str().c_str()), SHMHT_OK) << shmht_last_error();
}

// An iteration whose shmht_iter_next fails to allocate and is retried sees every stable
// key exactly once: a failed step leaves the iterator where it was (the strong guarantee).
TEST(CApiOutOfMemory, AFailedIteratorStepIsRetriedWithoutDuplicates) {
  ScopedName name;
  shmht_options options;
  shmht_options_init(&options);
  options.capacity = 2000;
  shmht_table* t = nullptr;
  ASSERT_EQ(shmht_open(name.str().c_str(), &options, &t), SHMHT_OK) << shmht_last_error();
  constexpr int kItems = 1500;
  for (int i = 0; i < kItems; ++i) {
    const std::string key = "a-key-long-enough-to-leave-small-string-storage-" + std::to_string(i);
    ASSERT_EQ(shmht_put(t, key.data(), key.size(), "v", 1), SHMHT_OK);
  }
  shmht_iter* it = nullptr;
  ASSERT_EQ(shmht_iter_open(t, &it), SHMHT_OK);
  std::map<std::string, int> seen;
  int failures = 0;
  for (int calls = 0; calls < 100'000; ++calls) {
    const void *kp = nullptr, *vp = nullptr;
    size_t kl = 0, vl = 0;
    g_allocations_left.store(failures < 200 ? 40 : -1);  // 40: fails part-way through a batch
    const int rc = shmht_iter_next(it, &kp, &kl, &vp, &vl);
    g_allocations_left.store(-1);
    if (rc == SHMHT_END) break;
    if (rc == SHMHT_OUT_OF_MEMORY) {
      ++failures;
      continue;  // retry the same call
    }
    ASSERT_EQ(rc, SHMHT_OK) << shmht_last_error();
    ++seen[std::string(static_cast<const char*>(kp), kl)];
  }
  std::printf("shmht_iter_next: %d SHMHT_OUT_OF_MEMORY retried\n", failures);
  EXPECT_GT(failures, 0) << "the test never made a step fail";
  int duplicates = 0;
  for (const auto& [key, count] : seen) duplicates += count > 1 ? 1 : 0;
  EXPECT_EQ(duplicates, 0) << "keys seen more than once";
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(kItems)) << "keys never seen";
  shmht_iter_close(it);
  shmht_close(t);
  EXPECT_EQ(shmht_unlink(name.str().c_str()), SHMHT_OK) << shmht_last_error();
}

}  // namespace
}  // namespace shmht::test
