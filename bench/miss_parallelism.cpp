// miss_parallelism.cpp - how many cache misses this machine's core keeps in flight: the
// ceiling on what batched lookups (Table::get_many) can overlap (issue 13).
//
//   build/bench/miss_parallelism [MIB]   (default 512: a buffer far larger than the caches)
//
// Two loops over random 64-byte lines of a private buffer, 4 KiB pages and then 2 MiB
// pages (MADV_HUGEPAGE; "not granted" when THP is off for private memory):
//   chain        each read's address depends on the previous read's value: one miss at a
//                time, so ns per read is the latency of one miss;
//   prefetched   the same chain, with every line requested (__builtin_prefetch) D reads
//                ahead; the requests do not depend on the chain, so the core issues them
//                as far ahead as its buffers allow, and ns per read is the throughput of
//                overlapped misses. latency / throughput = lines in flight.
// Best of 3 passes of 2M reads each; one line per (pages, D).
#include <sys/mman.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace {

constexpr std::size_t kLine = 64, kHugePage = std::size_t{2} << 20, kReads = 2'000'000;

// A buffer of `bytes` aligned to a huge page, every page touched (so that no read faults).
char* map_buffer(std::size_t bytes, bool huge) {
  void* raw = mmap(nullptr, bytes + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) {
    std::perror("mmap");
    std::exit(1);
  }
  auto* at = reinterpret_cast<char*>((reinterpret_cast<std::uintptr_t>(raw) + kHugePage - 1) & ~(kHugePage - 1));
  madvise(at, bytes, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
  for (std::size_t i = 0; i < bytes; i += 4096) at[i] = 0;  // every byte stays 0: see chase()
  return at;
}

std::uint64_t anon_huge_kib() {
  std::ifstream smaps("/proc/self/smaps_rollup");
  for (std::string line; std::getline(smaps, line);) {
    if (line.rfind("AnonHugePages:", 0) == 0) return std::strtoull(line.c_str() + 14, nullptr, 10);
  }
  return 0;
}

// ns per read of the chain over `lines`, each prefetched `ahead` reads before (0: none).
// Every byte is 0, so `carry` is always 0, but the core cannot know that before the read:
// each address waits for the read before it.
double chase(const char* buffer, const std::vector<std::size_t>& lines, std::size_t ahead) {
  double best = 1e18;
  for (int pass = 0; pass < 3; ++pass) {
    const auto start = std::chrono::steady_clock::now();
    std::size_t carry = 0;
    for (std::size_t i = 0; i < lines.size(); ++i) {
      if (ahead != 0 && i + ahead < lines.size()) __builtin_prefetch(buffer + lines[i + ahead]);
      carry = static_cast<unsigned char>(*static_cast<const volatile char*>(buffer + (lines[i] | carry)));
    }
    const double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count();
    best = std::min(best, ns / static_cast<double>(lines.size()));
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t bytes = (argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 512) << 20;
  std::mt19937_64 rng(1);
  std::vector<std::size_t> lines(kReads);
  for (std::size_t& line : lines) line = (rng() % (bytes / kLine)) * kLine;
  for (const bool huge : {false, true}) {
    const std::uint64_t huge_before = anon_huge_kib();
    const char* buffer = map_buffer(bytes, huge);
    const char* pages = !huge ? "4 KiB" : anon_huge_kib() > huge_before ? "2 MiB" : "2 MiB (not granted)";
    const double latency = chase(buffer, lines, 0);
    std::printf("%-20s chain:          %6.1f ns/read (one miss at a time)\n", pages, latency);
    for (const std::size_t ahead : {4, 16, 64}) {
      const double ns = chase(buffer, lines, ahead);
      std::printf("%-20s prefetched %2zu: %6.1f ns/read, %4.1f lines in flight\n", pages, ahead, ns, latency / ns);
    }
    munmap(const_cast<char*>(buffer), bytes);
  }
}
