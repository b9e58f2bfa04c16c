// workload.cpp - see workload.hpp.
#include "workload.hpp"

#include <algorithm>
#include <numeric>

namespace shmht::harness {
namespace {

std::uint64_t splitmix64(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

std::optional<std::string> validate(const WorkloadSpec& spec) {
  if (spec.keys == 0) return "keys must be at least 1";
  if (spec.key_bytes < key_digits(spec.keys) + 1) {
    return "key_bytes is " + std::to_string(spec.key_bytes) + "; " + std::to_string(spec.keys) + " keys need at least " +
           std::to_string(key_digits(spec.keys) + 1);
  }
  if (spec.value_bytes == 0) return "value_bytes must be at least 1";
  if (std::accumulate(spec.mix.begin(), spec.mix.end(), std::uint64_t{0}) == 0) return "mix: every weight is 0";
  if (spec.distribution == KeyDistribution::kZipf && !(spec.zipf_theta > 0 && spec.zipf_theta < 1)) {
    return "zipf_theta is " + std::to_string(spec.zipf_theta) + "; it must be in (0, 1)";
  }
  if (!(spec.prefill >= 0 && spec.prefill <= 1)) return "prefill must be a fraction in [0, 1]";
  if ((spec.total_ops == 0) == (spec.duration_s <= 0)) return "give exactly one of ops and duration_s";
  return std::nullopt;
}

Random::Random(std::uint64_t seed, std::uint64_t stream) {
  std::uint64_t x = seed * 0x9e3779b97f4a7c15ULL + stream;
  for (auto& word : s_) word = splitmix64(x);
}

std::uint64_t Random::next() {
  const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const std::uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

ZipfDistribution::ZipfDistribution(std::uint64_t n, double theta) : n_(n), theta_(theta) {
  double zeta2 = 0;
  zetan_ = 0;
  for (std::uint64_t i = 1; i <= n; ++i) {
    const double term = 1.0 / std::pow(static_cast<double>(i), theta);
    zetan_ += term;
    if (i == 2) zeta2 = zetan_;
  }
  if (n < 2) zeta2 = zetan_;
  alpha_ = 1.0 / (1.0 - theta);
  eta_ = (1.0 - std::pow(2.0 / static_cast<double>(n), 1.0 - theta)) / (1.0 - zeta2 / zetan_);
  half_pow_theta_ = 1.0 + std::pow(0.5, theta);
}

std::uint64_t ZipfDistribution::sample(Random& random) const {
  const double u = random.unit();
  const double uz = u * zetan_;
  if (uz < 1.0) return 0;
  if (uz < half_pow_theta_) return std::min<std::uint64_t>(1, n_ - 1);
  const auto rank = static_cast<std::uint64_t>(static_cast<double>(n_) * std::pow(eta_ * u - eta_ + 1.0, alpha_));
  return std::min(rank, n_ - 1);
}

KeyChooser::KeyChooser(const WorkloadSpec& spec) : keys_(spec.keys) {
  if (spec.distribution == KeyDistribution::kZipf) zipf_.emplace(spec.keys, spec.zipf_theta);
}

OpMix::OpMix(const std::array<std::uint32_t, kOpTypes>& weights) {
  std::partial_sum(weights.begin(), weights.end(), cumulative_.begin());
}

OpType OpMix::next(Random& random) const {
  const std::uint64_t pick = random.below(cumulative_.back());
  std::size_t i = 0;
  while (i + 1 < kOpTypes && pick >= cumulative_[i]) ++i;
  return static_cast<OpType>(i);
}

void format_key(std::uint64_t index, std::span<char> out) {
  out[0] = 'k';
  for (std::size_t i = out.size() - 1; i >= 1; --i) {
    out[i] = static_cast<char>('0' + index % 10);
    index /= 10;
  }
}

std::uint32_t key_digits(std::uint64_t keys) {
  std::uint32_t digits = 1;
  for (std::uint64_t largest = keys > 0 ? keys - 1 : 0; largest >= 10; largest /= 10) ++digits;
  return digits;
}

}  // namespace shmht::harness
