// table_access.hpp - internal access from the checker (and white-box tests) to a Table's
// context and engine, without widening the public API.
#pragma once

#include <cstdint>
#include <functional>

#include "engines/engine.hpp"
#include "shmht/table.hpp"

namespace shmht {

struct TableAccess {
  // Runs fn with writers excluded (see EngineBase::with_exclusive_access).
  static void run_exclusive(Table& table, const std::function<void(TableContext&)>& fn, std::uint64_t* repaired);
};

}  // namespace shmht
