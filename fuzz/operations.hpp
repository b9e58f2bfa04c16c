// operations.hpp - fuzz target 2: sequences of operations against a model.
//
// An input is a program. Byte 0 sets the table up; every following operation is an
// opcode byte (taken modulo kOpCount) and the argument bytes it reads (a missing byte
// reads as 0). One table per input, small enough that full-table errors happen:
//
//   setup   bits 0-1: engine (kAllEngines order)     bits 2-3: capacity 1, 8, 60, 400
//           bits 4-5: max_bytes = the fixed part + 1, 2, 4 or 64 arena chunks
//           bit 6: max_processes 3 or 4              bit 7: striped engine with 4 or 64 stripes
//   key     one byte b: "k<b>" then (b % 9) * 4 '+' (b % 9 == 8: longer than max_key_bytes 32)
//   value   one byte b: b * 5 bytes (b > 200: longer than max_value_bytes 1000)
//
//   insert key value | assign key value | erase key | get key | get_into key size |
//   contains key | size | for_each | switch_engine engine | reopen | check |
//   fill count (inserts count+1 new keys until the table is full) |
//   churn count value (assigns count+1 new keys, then erases them: past a chunk's worth
//                      of freed records, an attachment hands its free lists to the shared
//                      ones, which later allocations take from) |
//   other_handle (later operations go through the other of two handles of this process:
//                 another attachment, with its own allocator state) |
//   crash action key value point flags
//
// Every result must match a std::map: insert/assign/erase's return values, get's value,
// size, stats().items, the whole for_each walk, and check: clean, with the model's item
// count. A refusal must be the right one (kKeyTooLarge, kValueTooLarge; kTableFull or
// kNoSpace only from an operation that writes a record) and must change nothing.
// switch_engine closes the handles and opens the table with another engine, which runs
// cold-start recovery; reopen does the same with the active engine.
//
// crash forks a child that opens the table (the parent closes its handles first; with
// flags bit 0 it keeps the current one), installs a fault hook (shmht/testing.hpp) that SIGKILLs it at fault
// point `point`, and runs `action`: insert, assign or erase of (key, value), a get, a check,
// or an open with the next engine (a cold start, when the parent's handle is closed). A
// child that completes reports its result in its exit status and the model applies it as
// acknowledged. A killed child's operation was never acknowledged: either outcome is
// allowed for its key, and a get decides which one the model takes; everything else must
// still match exactly, check must be clean, and only the bytes of records the dead child
// held may be unaccounted. At most kMaxCrashes children per input (a fork is slow).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace shmht::fuzz {

enum class Op : std::uint8_t {
  kInsert, kAssign, kErase, kGet, kGetInto, kContains, kSize, kForEach,  // one key, or the whole table
  kSwitchEngine, kReopen, kCheck, kFill, kCrash, kChurn, kOtherHandle,
  kCount
};

enum class CrashAction : std::uint8_t { kInsert, kAssign, kErase, kGet, kCheck, kOpenOtherEngine, kCount };

inline constexpr int kMaxCrashes = 2;

// A result that the model does not allow.
class ModelMismatch : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

// Runs the program; throws ModelMismatch on the first disagreement. shmht::Error never
// escapes: every refusal is judged against the model.
void run_operations(std::span<const std::uint8_t> program);

// Builds programs (the seed corpus generator, tests).
class ProgramWriter {
 public:
  explicit ProgramWriter(std::uint8_t setup) { bytes_.push_back(setup); }
  ProgramWriter& add(Op op, std::initializer_list<std::uint8_t> args = {}) {
    bytes_.push_back(static_cast<std::uint8_t>(op));
    bytes_.insert(bytes_.end(), args);
    return *this;
  }
  const std::vector<std::uint8_t>& bytes() const noexcept { return bytes_; }

 private:
  std::vector<std::uint8_t> bytes_;
};

}  // namespace shmht::fuzz
