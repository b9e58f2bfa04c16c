// operations_fuzzer.cpp - libFuzzer entry point of fuzz target 2 (operations.hpp): every
// input is a program of table operations, checked against a std::map.
#include <cstdio>
#include <cstdlib>

#include "operations.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    shmht::fuzz::run_operations(std::span<const std::uint8_t>(data, size));
  } catch (const shmht::fuzz::ModelMismatch& e) {
    std::fprintf(stderr, "model mismatch: %s\n", e.what());
    std::abort();  // libFuzzer saves the input as a crash
  }
  return 0;
}
