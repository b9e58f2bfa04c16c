// shmht/error.hpp - the one error type of the public API.
//
// Every failure is reported by throwing shmht::Error, whose code() says what kind of
// failure it was and whose what() is a message a user can act on ("key is 300 bytes;
// this table's maximum is 255"). Absence of a key is not an error: lookups return
// std::optional / bool.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace shmht {

enum class ErrorCode {
  kKeyTooLarge,        // key longer than the table's max_key_bytes
  kValueTooLarge,      // value longer than the table's max_value_bytes
  kTableFull,          // no slot within the probe limit, or the arena reached max_bytes
  kNoSpace,            // the filesystem holding the table has no room for it to grow
  kCorrupt,            // the region fails validation (bad magic, checksum, offset out of range...)
  kVersionMismatch,    // the file was written by another layout version or ABI
  kEngineMismatch,     // live processes use another engine on this table
  kEngineUnavailable,  // the engine is not built yet
  kPermissionDenied,   // the OS refused access to the backing file
  kNotFound,           // no table of that name
  kAlreadyExists,      // create() of a name that exists
  kTooManyProcesses,   // the attached-process table is full
  kInUse,              // removing a table that live processes are attached to, or the table
                       // is busy: another process held it for seconds while opening,
                       // recovering or switching it (liveness::kAdminLockWait)
  kInvalidArgument,    // bad option or argument from the caller
  kSystem,             // an unexpected OS error (errno in the message)
  kNotACounter,        // Table::add / decode_counter met a value that is not an int64's decimal text
  kCounterOverflow,    // Table::add would take a counter past the range of std::int64_t
};

std::string_view error_code_name(ErrorCode code) noexcept;

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message)
      : std::runtime_error(message), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

}  // namespace shmht
