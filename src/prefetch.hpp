// prefetch.hpp - software prefetches the compiler keeps.
//
// A prefetch changes no value a program can observe, and GCC 12 at -O3 deleted a loop
// whose body was nothing but __builtin_prefetch of each key's bytes (get_many's first
// pipeline step: the instruction was absent from the generated code, and the hash that
// followed waited for every key's miss). The empty asm statement names the address as an
// input, which the compiler must assume is used, so the prefetch before it stays. It
// emits no instruction.
#pragma once

namespace shmht {

inline void prefetch_for_read(const void* address) noexcept {
  __builtin_prefetch(address, 0, 3);
  asm volatile("" : : "r"(address));
}

inline void prefetch_for_write(const void* address) noexcept {
  __builtin_prefetch(address, 1, 3);
  asm volatile("" : : "r"(address));
}

}  // namespace shmht
