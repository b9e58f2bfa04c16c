// fuzz_replay_test.cpp - every input committed under fuzz/ replayed through the fuzz
// targets' own code (fuzz/table_file.hpp, fuzz/operations.hpp) in this build: what the
// fuzzers found stays fixed under gcc too, in the release and ASan + UBSan suites, not
// only in the clang fuzz build. Each input runs in a forked child with a deadline, so a
// hang fails its case instead of stalling the suite. Also checks that the seed tables
// are current (fuzz/make_seed_corpus.cpp): stale seeds would only exercise the version check.
#include <dirent.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "fuzz_support.hpp"
#include "operations.hpp"
#include "shmht/check.hpp"
#include "table_file.hpp"
#include "test_support.hpp"

namespace shmht::test {
namespace {

struct Input {
  std::string target;  // table_file or operations
  std::string path;
};

void PrintTo(const Input& input, std::ostream* os) { *os << input.path; }

std::string fuzz_dir() {
  const char* dir = std::getenv("SHMHT_FUZZ_DIR");  // set by tests/meson.build
  return dir != nullptr ? dir : "fuzz";
}

std::vector<std::string> files_in(const std::string& dir) {
  std::vector<std::string> files;
  if (DIR* d = opendir(dir.c_str())) {
    while (const dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') files.push_back(dir + "/" + e->d_name);
    }
    closedir(d);
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<Input> committed_inputs() {
  std::vector<Input> inputs;
  for (const char* target : {"table_file", "operations"}) {
    for (const char* kind : {"regressions", "corpus"}) {
      for (const std::string& f : files_in(fuzz_dir() + "/" + kind + "/" + target)) inputs.push_back({target, f});
    }
  }
  return inputs;
}

std::vector<std::uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string case_name(const ::testing::TestParamInfo<Input>& info) {
  const std::string& p = info.param.path;
  std::string name = p.substr(p.rfind('/', p.rfind('/') - 1) + 1);  // <kind>/<target>/<file> -> <target>/<file>
  name = (p.find("/regressions/") != std::string::npos ? "regression_" : "seed_") + name;
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

class Replay : public ::testing::TestWithParam<Input> {};

TEST_P(Replay, EndsWithErrorsOnlyAndMatchesTheModel) {
  const Input input = GetParam();
  const std::vector<std::uint8_t> bytes = read_bytes(input.path);
  ASSERT_FALSE(bytes.empty()) << input.path;
  Children children;
  children.spawn([&] {
    try {
      if (input.target == "table_file") {
        fuzz::exercise_table_file(bytes);
      } else {
        fuzz::run_operations(bytes);
      }
    } catch (const fuzz::ModelMismatch& e) {
      fprintf(stderr, "%s: model mismatch: %s\n", input.path.c_str(), e.what());
      return 1;
    }
    return 0;
  });
  children.expect_all_succeed(std::chrono::seconds(60));
}

INSTANTIATE_TEST_SUITE_P(Committed, Replay, ::testing::ValuesIn(committed_inputs()), case_name);

// Every seed table is a table of this layout version, and opens and checks clean (the
// ones whose writer was killed mid-operation are repaired on the way).
TEST(SeedCorpus, TablesAreCurrent) {
  const std::vector<std::string> seeds = files_in(fuzz_dir() + "/corpus/table_file");
  ASSERT_GE(seeds.size(), 4u * std::size(kAllEngines)) << "no seed tables in " << fuzz_dir();
  for (const std::string& seed : seeds) {
    const fuzz::ScratchFile file("seed");
    file.write(read_bytes(seed));
    try {
      const CheckReport report = check_table(file.path());
      EXPECT_TRUE(report.clean) << seed << ": " << (report.problems.empty() ? "" : report.problems.front());
    } catch (const Error& e) {
      ADD_FAILURE() << seed << ": " << e.what() << " (regenerate the corpus: build/fuzz/make_seed_corpus fuzz/corpus)";
    }
  }
}

}  // namespace
}  // namespace shmht::test
