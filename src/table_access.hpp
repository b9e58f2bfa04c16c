// table_access.hpp - internal access from the checker (and white-box tests) to a Table's
// context and engine, without widening the public API.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "engines/engine.hpp"
#include "shmht/table.hpp"

namespace shmht {

struct TableAccess {
  // Runs fn with writers excluded (see EngineBase::with_exclusive_access).
  static void run_exclusive(Table& table, const std::function<void(TableContext&)>& fn, std::uint64_t* repaired);
  // Home slots this handle's take_any calls have scanned in all (tests bound the work).
  static std::uint64_t take_any_slots_scanned(Table& table);
  // Runs fn under the table's admin lock (Region::with_admin_lock) with the live entries.
  static void with_admin_lock(Table& table, const std::function<void(TableContext&, const std::vector<std::uint32_t>& live)>& fn);
};

}  // namespace shmht
