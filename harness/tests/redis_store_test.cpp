// The redis stores through the Store interface the driver uses: each operation's meaning,
// binary-safe keys and values, pipelined results equal to one-at-a-time ones, an error
// reply failing only its own operation, and a server that is gone (process and
// directory) once the store is destroyed. Skipped where redis-server or hiredis is missing.
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "backing.hpp"
#include "store.hpp"

namespace shmht::harness {
namespace {

using namespace std::string_literals;

class RedisStoreTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    kind_ = find_store_kind(GetParam());
    ASSERT_NE(kind_, nullptr) << GetParam() << " is not registered";
    if (const auto reason = kind_->unavailable_reason()) GTEST_SKIP() << *reason;
    params_.name_prefix = "shmht-bench-test-" + std::to_string(getpid()) + "-gtest-";
    params_.backing = *probe_backing(BackingKind::kTmpfs).backing;
    params_.capacity = 1000;
    params_.key_bytes = 16;
    params_.value_bytes = 8;
    params_.batch = 4;
    store_ = kind_->create(params_);
  }
  void TearDown() override {
    if (store_) store_->destroy();
  }

  std::string directory() const { return params_.backing.directory + "/" + params_.name_prefix + "redis"; }

  const StoreKind* kind_ = nullptr;
  StoreParams params_;
  std::unique_ptr<Store> store_;
};

TEST_P(RedisStoreTest, EachOperationMeansWhatTheOtherStoresMean) {
  auto session = store_->attach();
  std::array<char, 8> out{};
  EXPECT_FALSE(session->get("k1", out));
  EXPECT_TRUE(session->insert("k1", "value-01"));   // absent: inserted
  EXPECT_FALSE(session->insert("k1", "value-02"));  // present: unchanged
  ASSERT_TRUE(session->get("k1", out));
  EXPECT_EQ(std::string(out.data(), out.size()), "value-01");
  EXPECT_FALSE(session->assign("k1", "value-03"));  // overwritten: not new
  EXPECT_TRUE(session->assign("k2", "value-04"));   // new
  ASSERT_TRUE(session->get("k1", out));
  EXPECT_EQ(std::string(out.data(), out.size()), "value-03");
  EXPECT_TRUE(session->erase("k1"));
  EXPECT_FALSE(session->erase("k1"));
  EXPECT_FALSE(session->get("k1", out));
  EXPECT_EQ(store_->footprint().items, 1u);
}

TEST_P(RedisStoreTest, KeysAndValuesAreBinarySafe) {
  auto session = store_->attach();
  const std::string key = "k\0\xff\r\n "s, value = "\0v\xfe\0\r\n%s"s;
  ASSERT_EQ(value.size(), 8u);
  EXPECT_TRUE(session->insert(key, value));
  std::array<char, 8> out{};
  ASSERT_TRUE(session->get(key, out));
  EXPECT_EQ(std::string(out.data(), out.size()), value);
  EXPECT_FALSE(session->get("k", out));  // the key is not cut at its NUL
}

TEST_P(RedisStoreTest, PipelinedResultsAreTheOneAtATimeResultsInOrder) {
  auto session = store_->attach();
  ASSERT_TRUE(session->can_pipeline());
  struct Step {
    OpType op;
    const char* key;
    bool returns;
  };
  const std::vector<Step> steps = {
      {OpType::kGet, "a", false},    {OpType::kInsert, "a", true}, {OpType::kInsert, "a", false},
      {OpType::kGet, "a", true},     {OpType::kAssign, "a", false}, {OpType::kAssign, "b", true},
      {OpType::kErase, "a", true},   {OpType::kErase, "a", false},  {OpType::kGet, "b", true},
  };
  for (const Step& s : steps) session->enqueue(s.op, s.key, "value-01");
  std::vector<OpResult> results(steps.size());
  session->collect(results);
  for (std::size_t i = 0; i < steps.size(); ++i) {
    EXPECT_EQ(results[i].value, steps[i].returns) << "step " << i;
    EXPECT_EQ(results[i].error, "") << "step " << i;
  }
  // The session is usable one at a time after a batch.
  EXPECT_TRUE(session->insert("c", "value-01"));
}

TEST_P(RedisStoreTest, AnErrorReplyFailsOnlyItsOwnOperation) {
  // A key that holds a list, made behind the store's back: GET on it is a WRONGTYPE error.
  redisContext* raw = redisConnectUnix((directory() + "/redis.sock").c_str());
  ASSERT_TRUE(raw && !raw->err);
  freeReplyObject(redisCommand(raw, "RPUSH %s %s", "list", "x"));
  redisFree(raw);

  auto session = store_->attach();
  session->enqueue(OpType::kGet, "absent", "");
  session->enqueue(OpType::kGet, "list", "");
  session->enqueue(OpType::kInsert, "new", "value-01");
  std::vector<OpResult> results(3);
  session->collect(results);
  EXPECT_FALSE(results[0].value);
  EXPECT_EQ(results[0].error, "");
  EXPECT_NE(results[1].error.find("WRONGTYPE"), std::string::npos) << results[1].error;
  EXPECT_TRUE(results[2].value);
  EXPECT_EQ(results[2].error, "");
  std::array<char, 8> out{};
  try {
    session->get("list", out);
    ADD_FAILURE() << "get on a list did not throw";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("WRONGTYPE"), std::string::npos) << e.what();
  }
}

TEST_P(RedisStoreTest, ReportsItsServerAndLeavesNothingOnceDestroyed) {
  const auto usage = store_->server_usage();
  ASSERT_TRUE(usage.has_value());
  EXPECT_EQ(usage->program, "redis-server");
  EXPECT_FALSE(usage->version.empty());
  EXPECT_GE(usage->user_s + usage->sys_s, 0.0);
  const pid_t pid = usage->pid;
  ASSERT_EQ(kill(pid, 0), 0) << "the server is not running";
  ASSERT_TRUE(std::filesystem::is_directory(directory()));
  EXPECT_EQ(std::filesystem::status(directory()).permissions(), std::filesystem::perms::owner_all);

  store_->destroy();
  EXPECT_EQ(kill(pid, 0), -1) << "redis-server " << pid << " outlived its store";
  EXPECT_EQ(errno, ESRCH);  // not even a zombie: destroy() reaped it
  EXPECT_FALSE(std::filesystem::exists(directory()));
  store_->destroy();  // idempotent
}

TEST_P(RedisStoreTest, ASecondStoreWithTheSamePrefixFailsAndLeavesTheFirstAlone) {
  try {
    kind_->create(params_);
    ADD_FAILURE() << "a second store over the same directory was created";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("File exists"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(std::filesystem::exists(directory() + "/redis.sock"));
  auto session = store_->attach();
  EXPECT_TRUE(session->insert("still", "serving!"));
}

INSTANTIATE_TEST_SUITE_P(RedisStores, RedisStoreTest, ::testing::Values("redis", "redis-pipelined"),
                         [](const auto& param) { return std::string(param.param) == "redis" ? "redis" : "pipelined"; });

}  // namespace
}  // namespace shmht::harness
