// trust_test.cpp - the trust boundary between users sharing a machine (issue 19 §3):
// whose table a process opens, what kind of file it is, what `remove` unlinks, and the
// name a table is staged under while it is created.
//
// Tests that play another user chown files or drop privileges, so they need root and are
// skipped otherwise. Every child is bounded (Children's deadline, alarm()), and every
// file and directory made here is removed whatever the outcome.
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "shmht/table.hpp"
#include "test_support.hpp"

namespace shmht::test {
namespace {

constexpr uid_t kOtherUser = 65534;    // plays the user who planted or shares the table
constexpr uid_t kCallingUser = 65533;  // plays the service that opens it
constexpr gid_t kSharedGroup = 65534;

std::string path_of(const std::string& name) { return "/dev/shm/" + name; }

OpenOptions open_options(bool read_only, bool trust_foreign_owner) {
  OpenOptions options;
  options.read_only = read_only;
  options.trust_foreign_owner = trust_foreign_owner;
  return options;
}

// A table at `name` owned by kOtherUser:kSharedGroup with exactly `mode` (one that only
// writers may read: 0666, 0660), and its lock file as that user's create would leave it.
void make_foreign_table(const std::string& name, mode_t mode) {
  Table::create(name, {.capacity = 100}).close();
  for (const std::string& file : {path_of(name), path_of(name) + ".shmht-lock"}) {
    ASSERT_EQ(chown(file.c_str(), kOtherUser, kSharedGroup), 0) << file << ": " << std::strerror(errno);
    ASSERT_EQ(chmod(file.c_str(), mode), 0) << file << ": " << std::strerror(errno);
  }
}

// In a child running as kCallingUser (in kSharedGroup only when `in_group`), opens `name`
// read-write and returns 0 if the outcome is `expected` (nullopt: it opened), else 1.
int open_as_calling_user(const std::string& name, bool in_group, std::optional<ErrorCode> expected, bool trust = false) {
  const gid_t group = in_group ? kSharedGroup : kCallingUser;
  if (setgroups(0, nullptr) != 0 || setgid(group) != 0 || setuid(kCallingUser) != 0) return 2;
  try {
    Table t = Table::open(name, open_options(false, trust));
    return expected ? 1 : 0;
  } catch (const Error& e) {
    fprintf(stderr, "open as uid %u: %s\n", kCallingUser, e.what());
    return e.code() == expected ? 0 : 1;
  }
}

// A private directory under /dev/shm, removed with what is left in it.
class ScopedDirectory {
 public:
  ScopedDirectory() {
    char name[] = "/dev/shm/shmht-trust-XXXXXX";
    if (mkdtemp(name) == nullptr) throw std::runtime_error(std::string("mkdtemp: ") + std::strerror(errno));
    path_ = name;
  }
  ~ScopedDirectory() { std::system(("rm -rf '" + path_ + "'").c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Runs first in this binary, so this process has staged no table before it.
// create stages a table under a name nobody else can take first: files planted at the
// predictable names a creator used to stage under (.shmht-creating-<pid>-<n>) must not
// stop it.
TEST(TrustStaging, PlantedStagingNamesDoNotStopCreate) {
  const ScopedDirectory dir;
  for (int n = 0; n < 256; ++n) {
    const std::string planted = dir.path() + "/.shmht-creating-" + std::to_string(getpid()) + "-" + std::to_string(n);
    const int fd = ::open(planted.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
    ASSERT_GE(fd, 0);
    ::close(fd);
  }
  for (int i = 0; i < 8; ++i) {
    const std::string path = dir.path() + "/t" + std::to_string(i);
    EXPECT_NO_THROW(Table::create(path, {.capacity = 10}).close()) << path;
  }
}

// Without /proc (some containers), an O_TMPFILE cannot be linked into place without a
// capability: create stages under a random name instead and leaves nothing behind. The
// child hides /proc under an empty tmpfs in a mount namespace of its own.
TEST(TrustStaging, CreateWorksWithoutProcAndLeavesNoStagingFile) {
  test::in_private_tmpfs([](const std::string& dir) -> std::string {
    if (mount("tmpfs", "/proc", "tmpfs", 0, "size=1m") != 0) return std::string("hiding /proc: ") + std::strerror(errno);
    try {
      Table t = Table::create(dir + "/t", {.capacity = 10});
      t.assign("k", "v");
      if (t.get("k") != "v") return "the value did not round-trip";
    } catch (const std::exception& e) {
      return std::string("create without /proc: ") + e.what();
    }
    std::vector<std::string> names;
    DIR* d = opendir(dir.c_str());
    if (d == nullptr) return "opendir failed";
    while (const dirent* entry = readdir(d)) {
      const std::string name = entry->d_name;
      if (name != "." && name != ".." && name != "t.shmht-lock") names.emplace_back(name);  // the lock file: liveness.hpp
    }
    closedir(d);
    if (names != std::vector<std::string>{"t"}) return "the directory holds " + std::to_string(names.size()) + " files, not just t";
    return "";
  });
}

class Trust : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "playing another user needs root (chown, setuid)";
  }
  ScopedName name_;
};

// Another user planted a world-writable table under the name a service will use: the
// service must not store its data there unless it says it trusts the owner.
TEST_F(Trust, WorldWritableTableOfAnotherUserIsRefusedWithoutOptIn) {
  make_foreign_table(name_, 0666);
  Children children;
  children.spawn([&] { return open_as_calling_user(name_, false, ErrorCode::kPermissionDenied); });
  children.expect_all_succeed(std::chrono::seconds(30));
  Children trusting;
  trusting.spawn([&] { return open_as_calling_user(name_, false, std::nullopt, /*trust=*/true); });
  trusting.expect_all_succeed(std::chrono::seconds(30));
}

// Sharing a table within a group (mode 0660) keeps working without any opt-in.
TEST_F(Trust, GroupSharedTableOpensWithoutOptIn) {
  make_foreign_table(name_, 0660);
  Children children;
  children.spawn([&] { return open_as_calling_user(name_, true, std::nullopt); });
  children.expect_all_succeed(std::chrono::seconds(30));
}

// Permission bits do not stop root, so root writing into any other user's table needs
// the opt-in; reading one (a 0644 table published read-only) does not.
TEST_F(Trust, RootOpeningAnotherUsersTableForWritingNeedsOptIn) {
  Table::create(name_, {.capacity = 100, .engine = Engine::kSeqlock}).close();
  ASSERT_EQ(chown(path_of(name_).c_str(), kOtherUser, kSharedGroup), 0);
  ASSERT_EQ(chmod(path_of(name_).c_str(), 0600), 0);
  expect_error(ErrorCode::kPermissionDenied, "trust_foreign_owner", [&] { Table::open(name_); });
  EXPECT_NO_THROW(Table::open(name_, open_options(true, false)));
  EXPECT_NO_THROW(Table::open(name_, open_options(false, true)));
}

// A FIFO at the name: an open would wait for a writer forever. alarm() bounds the child
// (SIGALRM kills it, which the parent reports).
TEST_F(Trust, FifoAtTheNameIsRefusedNotWaitedOn) {
  ASSERT_EQ(mkfifo(path_of(name_).c_str(), 0600), 0) << std::strerror(errno);
  for (const bool read_only : {true, false}) {
    Children children;
    children.spawn([&] {
      alarm(5);
      try {
        Table t = Table::open(name_, open_options(read_only, false));
        return 1;
      } catch (const Error& e) {
        fprintf(stderr, "%s\n", e.what());
        return e.code() == ErrorCode::kInvalidArgument ? 0 : 3;
      }
    });
    children.expect_all_succeed(std::chrono::seconds(20));
  }
}

nlink_t link_count(int fd) {
  struct stat st{};
  return fstat(fd, &st) == 0 ? st.st_nlink : 0;
}

// `remove` checks that a file is a table, then unlinks it. A child swaps two directories
// (renameat2 RENAME_EXCHANGE) in a loop: a/t is a table, b/t a file that is not one. The
// file that is not a table must survive every remove of a/t, whichever directory it is
// in at the moment.
TEST_F(Trust, RemoveNeverUnlinksAFileThatIsNotTheValidatedTable) {
  const ScopedDirectory dir;
  const std::string a = dir.path() + "/a", b = dir.path() + "/b";
  ASSERT_EQ(mkdir(a.c_str(), 0700), 0);
  ASSERT_EQ(mkdir(b.c_str(), 0700), 0);
  // Held open: its link count says whether any name still links it, whichever directory
  // the swapper has put it in (two lstat()s of a/t and b/t could straddle a swap).
  const int precious = ::open((b + "/t").c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  ASSERT_GE(precious, 0);
  struct CloseFd {
    int fd;
    ~CloseFd() { ::close(fd); }
  } close_precious{precious};
  ASSERT_EQ(write(precious, "precious, not a table", 21), 21);
  Children swapper;
  swapper.spawn([&] {
    alarm(60);
    for (;;) {
      if (renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE) != 0) return 2;
    }
  });
  int removed = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(4);
  for (int attempt = 0; attempt < 2000 && std::chrono::steady_clock::now() < deadline; ++attempt) {
    try {
      // Whichever directory `a` names now has no t (else EEXIST): the table goes there.
      Table::create(a + "/t", {.capacity = 10}).close();
    } catch (const Error&) {
    }
    try {
      removed += Table::remove(a + "/t") ? 1 : 0;
    } catch (const Error&) {
      // Found the non-table there (kInvalidArgument): refusing is right.
    }
    ASSERT_EQ(link_count(precious), 1u)
        << "remove unlinked the file that is not a table (attempt " << attempt << ", " << removed << " tables removed)";
  }
  EXPECT_GT(removed, 0) << "remove never removed the table: the race was not exercised";
  printf("%d tables removed while the directories were being swapped\n", removed);
}

}  // namespace
}  // namespace shmht::test
