// workload.hpp - what each worker does: which keys, which operations, how many.
//
// Keys are "k" followed by the key's index in decimal, zero-padded to key_bytes
// ("k0000000042"), so every key has the same length and any index can be formatted
// without a lookup table. Values are value_bytes of filler.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace shmht::harness {

enum class OpType : std::uint8_t { kGet = 0, kInsert = 1, kAssign = 2, kErase = 3 };
inline constexpr std::size_t kOpTypes = 4;
inline constexpr std::array<std::string_view, kOpTypes> kOpNames = {"get", "insert", "assign", "erase"};

enum class KeyDistribution { kUniform, kZipf };

struct WorkloadSpec {
  std::uint64_t keys = 100'000;
  std::uint32_t key_bytes = 16;
  std::uint32_t value_bytes = 64;
  std::array<std::uint32_t, kOpTypes> mix = {90, 0, 10, 0};  // weights, in kOpNames order
  KeyDistribution distribution = KeyDistribution::kUniform;
  double zipf_theta = 0.99;
  double prefill = 1.0;          // fraction of the keys inserted before the timed phase
  std::uint64_t total_ops = 0;   // split evenly over the workers; 0 = use duration_s
  double duration_s = 0;
  std::uint64_t seed = 1;
};

// Checks the spec; returns a message naming the field on error.
std::optional<std::string> validate(const WorkloadSpec& spec);

// Small, fast generator (xoshiro256**); one per worker, seeded from (seed, worker).
class Random {
  __extension__ using Wide = unsigned __int128;  // a GCC/Clang extension, hence __extension__

 public:
  Random(std::uint64_t seed, std::uint64_t stream);
  std::uint64_t next();
  // Uniform in [0, bound) (Lemire's multiply-shift; the bias is below 2^-32 for our bounds).
  std::uint64_t below(std::uint64_t bound) { return static_cast<std::uint64_t>((static_cast<Wide>(next()) * bound) >> 64); }
  double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  std::uint64_t s_[4];
};

// Zipf(theta) over [0, n), theta in (0, 1): Gray et al., "Quickly generating
// billion-record synthetic databases" (SIGMOD 1994), as YCSB does. zeta(n) costs O(n)
// once; it is computed in the parent before fork and inherited by the workers.
class ZipfDistribution {
 public:
  ZipfDistribution(std::uint64_t n, double theta);
  std::uint64_t sample(Random& random) const;

 private:
  std::uint64_t n_;
  double theta_, alpha_, zetan_, eta_, half_pow_theta_;
};

class KeyChooser {
 public:
  explicit KeyChooser(const WorkloadSpec& spec);
  std::uint64_t next(Random& random) const {
    return zipf_ ? zipf_->sample(random) : random.below(keys_);
  }

 private:
  std::uint64_t keys_;
  std::optional<ZipfDistribution> zipf_;
};

class OpMix {
 public:
  explicit OpMix(const std::array<std::uint32_t, kOpTypes>& weights);
  OpType next(Random& random) const;

 private:
  std::array<std::uint32_t, kOpTypes> cumulative_{};
};

// Writes key `index` into `out` (key_bytes long).
void format_key(std::uint64_t index, std::span<char> out);

// Decimal digits of the largest key index; a key needs one more byte for its "k".
std::uint32_t key_digits(std::uint64_t keys);

}  // namespace shmht::harness
