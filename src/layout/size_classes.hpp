// layout/size_classes.hpp - record size classes of the arena.
//
// A record (8-byte RecordHeader + key + value) is rounded up to its class size:
//   classes  0..31: 16, 32, ..., 512 bytes          (16-byte steps: small keys waste <16 B)
//   classes 32..   : 8 steps per doubling above 512 (576, 640, ..., 1024, 1152, ...)
//                    so no record wastes more than 1/8 of its size.
// A freed record goes on its class's free list and is reused by a record of that class.
#pragma once

#include <cstdint>

namespace shmht::layout {

inline constexpr unsigned kLinearClasses = 32;
inline constexpr std::uint64_t kLinearStep = 16;
inline constexpr std::uint64_t kLinearMax = kLinearClasses * kLinearStep;  // 512
inline constexpr unsigned kStepsPerDoubling = 8;
inline constexpr unsigned kDoublings = 17;  // up to 512 << 17 = 64 MiB
inline constexpr unsigned kSizeClassCount = kLinearClasses + kStepsPerDoubling * kDoublings;
inline constexpr std::uint64_t kMaxRecordBytes = kLinearMax << kDoublings;

constexpr std::uint64_t class_bytes(unsigned cls) noexcept {
  if (cls < kLinearClasses) return (cls + 1) * kLinearStep;
  const unsigned geometric = cls - kLinearClasses;
  const std::uint64_t base = kLinearMax << (geometric / kStepsPerDoubling);
  return base + (base / kStepsPerDoubling) * (geometric % kStepsPerDoubling + 1);
}

// Smallest class that holds `bytes` (1 <= bytes <= kMaxRecordBytes).
constexpr unsigned size_class_of(std::uint64_t bytes) noexcept {
  if (bytes <= kLinearMax) return static_cast<unsigned>((bytes + kLinearStep - 1) / kLinearStep) - 1;
  unsigned doubling = 0;
  while ((kLinearMax << (doubling + 1)) < bytes) ++doubling;
  const std::uint64_t base = kLinearMax << doubling;
  const std::uint64_t step = base / kStepsPerDoubling;
  const std::uint64_t steps = (bytes - base + step - 1) / step;  // 1..8
  return kLinearClasses + doubling * kStepsPerDoubling + static_cast<unsigned>(steps) - 1;
}

static_assert(class_bytes(0) == 16 && class_bytes(31) == 512);
static_assert(class_bytes(32) == 576 && class_bytes(39) == 1024 && class_bytes(40) == 1152);
static_assert(size_class_of(1) == 0 && size_class_of(16) == 0 && size_class_of(17) == 1);
static_assert(size_class_of(512) == 31 && size_class_of(513) == 32 && size_class_of(1024) == 39);
static_assert(size_class_of(1025) == 40);
static_assert(class_bytes(kSizeClassCount - 1) == kMaxRecordBytes, "last class is the max");
static_assert(size_class_of(kMaxRecordBytes) == kSizeClassCount - 1);

}  // namespace shmht::layout
