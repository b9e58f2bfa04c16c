// shared_control.cpp - see shared_control.hpp.
#include "shared_control.hpp"

#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <ctime>
#include <new>
#include <stdexcept>
#include <string>

namespace shmht::harness {

ControlBlock* map_control_block(std::uint32_t workers) {
  const std::size_t bytes = ControlBlock::bytes(workers);
  void* memory = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) throw std::runtime_error(std::string("mmap control block: ") + std::strerror(errno));
  auto* block = new (memory) ControlBlock();
  block->workers = workers;
  for (std::uint32_t i = 1; i < workers; ++i) new (&block->reports[i]) WorkerReport();
  return block;
}

void unmap_control_block(ControlBlock* block) {
  if (block) munmap(block, ControlBlock::bytes(block->workers));
}

void wait_for_go(ControlBlock& block) {
  while (block.go.load(std::memory_order_acquire) == 0) {
    // FUTEX_WAIT (not _PRIVATE): the word is shared between processes.
    syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&block.go), FUTEX_WAIT, 0, nullptr, nullptr, 0);
  }
}

void release_workers(ControlBlock& block) {
  block.go_ns = monotonic_ns();
  block.go.store(1, std::memory_order_release);
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&block.go), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

std::uint64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ULL + static_cast<std::uint64_t>(ts.tv_nsec);
}

}  // namespace shmht::harness
