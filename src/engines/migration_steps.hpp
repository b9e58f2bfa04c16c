// engines/migration_steps.hpp - the steps of a migration that every engine takes the same
// way (growth.hpp has the protocol). An engine supplies only what differs: how one home
// group moves and how a migration is finished (under its locks, or as multi-word CASes),
// and the value its control words start at in a new array.
#pragma once

#include <algorithm>
#include <cstdint>

#include "engines/engine.hpp"
#include "growth.hpp"
#include "shmht/error.hpp"

namespace shmht {

class MigrationSteps {
 public:
  MigrationSteps(TableContext& context, std::uint64_t initial_control) : ctx_(context), initial_control_(initial_control) {}

  // A write during a migration: its key's own group first (the write needs it in the
  // current array), then a few claimed ones, so the work per write is bounded. The
  // claimant of the last groups finishes at once; if it was killed or stopped before it
  // could, the writes that find nothing left to claim do, one in kFinishEvery.
  template <class MoveGroup, class Finish>
  void help(const growth::ArrayView& view, std::uint64_t hash, MoveGroup&& move_group, Finish&& finish) {
    move_group(layout::SlotArray::bucket_of_slot(view.old.home_of(hash)));
    const growth::GroupRange claimed = growth::claim_groups(ctx_.region(), view, growth::kGroupsPerClaim);
    for (std::uint64_t group = claimed.begin; group < claimed.end; ++group) move_group(group);
    const bool last_claim = !claimed.empty() && claimed.end == view.old.group_count();
    if (last_claim || (claimed.empty() && ++writes_after_last_claim_ % growth::kFinishEvery == 0)) finish();
  }

  // No room for a key: a larger array, or the migration under way finished first.
  template <class Finish>
  void grow(const growth::ArrayView& view, Finish&& finish) {
    if (view.migrating) {
      finish();
    } else {
      growth::start(ctx_.region(), view, initial_control_);
    }
  }

  // An insert linked a key; every kLoadCheckInterval of them the load is due a check.
  void count_insert() noexcept {
    if (++inserts_since_load_check_ >= growth::kLoadCheckInterval) {
      inserts_since_load_check_ = 0;
      load_check_due_ = true;
    }
  }
  bool load_check_due() const noexcept { return load_check_due_; }

  // Past kGrowAtLoad items per home slot, start a growth. Best effort: the insert that
  // asked has succeeded; one that finds no room reports a failed growth.
  void grow_if_loaded(const growth::ArrayView& view, std::int64_t items) {
    load_check_due_ = false;
    if (view.migrating) return;
    if (static_cast<double>(std::max<std::int64_t>(0, items)) < growth::kGrowAtLoad * static_cast<double>(view.current.home_slots())) {
      return;
    }
    try {
      growth::start(ctx_.region(), view, initial_control_);
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kNoSpace && e.code() != ErrorCode::kTableFull) throw;
    }
  }

 private:
  TableContext& ctx_;
  std::uint64_t initial_control_;
  std::uint32_t inserts_since_load_check_ = 0;
  std::uint32_t writes_after_last_claim_ = 0;
  bool load_check_due_ = false;
};

}  // namespace shmht
