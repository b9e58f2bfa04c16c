// engines/read_only.cpp - the engine of a read-only handle (OpenOptions::read_only).
//
// A read-only handle maps the table PROT_READ and attaches to no entry, so it may only
// run code that never stores to shared memory. This wrapper passes reads (get, contains,
// iteration, the item count) to an engine whose readers never write (seqlock: its
// readers note sequences and validate; its recovery and its locked-iteration fallback
// check TableContext::read_only and refuse), and answers every write with a clear
// kPermissionDenied instead of a segmentation fault on the read-only mapping. A bucket
// a writer keeps locked is waited on for at most liveness::kAdminLockWait, then kInUse
// (engines/owner.hpp: ReadOnlyWait): a read-only handle may be unable to tell a dead
// writer from a stopped one, and never waits without end.
//
// REWRITES UNDER A READER
//   Not being an attachment, a read-only handle never makes anyone wait (a reader must
//   never block the owner), and a cold start (engines/recovery.hpp) may run while it
//   reads: it resets lock words, repairs shifts and may switch the engine, after which
//   writers no longer bump seqlock sequences at all. So every read runs between two
//   looks at the header's rewrite_epoch (layout/header.hpp), as a seqlock reader runs
//   between two looks at a bucket's sequence: the first waits (at most
//   liveness::kAdminLockWait, then kInUse) until no rewrite is under way and checks that
//   the table is still seqlock (kEngineMismatch otherwise: reopen later); the second,
//   after an acquire fence, must see the same epoch, or the read is thrown away, its
//   answer or its error, and done again. A reader that saw any store of a rewrite sees
//   its odd epoch then (recovery.cpp's RewriteScope fences after making it odd).
#include <atomic>
#include <chrono>
#include <thread>
#include <type_traits>

#include "engines/engine.hpp"
#include "liveness.hpp"

namespace shmht {
namespace {

class ReadOnlyEngine final : public EngineBase {
 public:
  ReadOnlyEngine(std::unique_ptr<EngineBase> reader, const Region& region) : reader_(std::move(reader)), region_(region) {}

  std::optional<std::size_t> get(const HashedKey& key, std::span<char> out) override {
    return between_rewrites([&] { return reader_->get(key, out); });
  }
  bool get(const HashedKey& key, std::string* out) override {
    return between_rewrites([&] { return reader_->get(key, out); });
  }
  bool contains(const HashedKey& key) override {
    return between_rewrites([&] { return reader_->contains(key); });
  }
  void lookup_batch(std::span<const HashedKey> keys, bool want_values, BatchAnswers& out) override {
    // A batch done again answers each key again, replacing the earlier answer.
    between_rewrites([&] { reader_->lookup_batch(keys, want_values, out); });
  }
  std::uint32_t copy_home_range(std::uint32_t generation, std::uint64_t begin, std::uint64_t end,
                                std::vector<KeyValue>* out) override {
    const std::size_t keep = out->size();
    return between_rewrites([&] {
      out->resize(keep);
      return reader_->copy_home_range(generation, begin, end, out);
    });
  }
  std::int64_t item_count(Region& region) override {
    return between_rewrites([&] { return reader_->item_count(region); });
  }

  bool insert(const HashedKey&, std::string_view) override { refuse("insert"); }
  bool assign(const HashedKey&, std::string_view) override { refuse("assign"); }
  bool erase(const HashedKey&) override { refuse("erase"); }
  bool compare_and_set(const HashedKey&, std::optional<std::string_view>, std::optional<std::string_view>,
                       std::optional<std::string>*) override {
    refuse("compare_and_set");
  }
  bool take(const HashedKey&, std::string*) override { refuse("take"); }
  std::uint64_t with_exclusive_access(const std::function<void()>&) override { refuse("exclusive access (check)"); }

 private:
  [[noreturn]] static void refuse(const char* what) {
    throw Error(ErrorCode::kPermissionDenied, std::string(what) + ": this table handle was opened read-only");
  }

  // Runs `read` until no cold start began or ended while it ran (the essay above).
  template <class Read>
  auto between_rewrites(Read&& read) -> decltype(read()) {
    for (;;) {
      const std::uint32_t epoch = settled_epoch();
      try {
        if constexpr (std::is_void_v<decltype(read())>) {
          read();
          if (unchanged_since(epoch)) return;
        } else {
          auto result = read();
          if (unchanged_since(epoch)) return result;
        }
      } catch (const Error&) {
        if (unchanged_since(epoch)) throw;  // else a rewrite's doing: read again
      }
    }
  }

  // The epoch once no rewrite is under way, the table being seqlock still.
  std::uint32_t settled_epoch() const {
    const layout::Header& header = region_.header();
    const auto deadline = std::chrono::steady_clock::now() + liveness::kAdminLockWait;
    for (;;) {
      const std::uint32_t epoch = header.rewrite_epoch.load(std::memory_order_acquire);
      if (epoch % 2 == 0) {
        require_still_seqlock(header);
        return epoch;
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        throw Error(ErrorCode::kInUse, region_.path() + ": the table is busy: another process has been recovering or "
                                                        "switching it for over " +
                                           std::to_string(liveness::kAdminLockWait.count()) +
                                           " s (it may be stopped, or have died: the next read-write open finishes it); "
                                           "try again");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  void require_still_seqlock(const layout::Header& header) const {
    const auto active = static_cast<Engine>(header.active_engine.load(std::memory_order_acquire));
    if (active == Engine::kSeqlock) return;
    throw Error(ErrorCode::kEngineMismatch,
                region_.path() + ": the table was switched to engine '" + std::string(engine_name(active)) +
                    "' while this read-only handle was open; read-only access needs seqlock: open it again once the "
                    "table is seqlock again");
  }

  bool unchanged_since(std::uint32_t epoch) const {
    std::atomic_thread_fence(std::memory_order_acquire);
    return region_.header().rewrite_epoch.load(std::memory_order_relaxed) == epoch;
  }

  std::unique_ptr<EngineBase> reader_;
  const Region& region_;
};

}  // namespace

std::unique_ptr<EngineBase> make_read_only_engine(std::unique_ptr<EngineBase> reader, const Region& region) {
  return std::make_unique<ReadOnlyEngine>(std::move(reader), region);
}

}  // namespace shmht
