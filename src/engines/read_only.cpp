// engines/read_only.cpp - the engine of a read-only handle (OpenOptions::read_only).
//
// A read-only handle maps the table PROT_READ and attaches to no entry, so it may only
// run code that never stores to shared memory. This wrapper passes reads (get, contains,
// iteration, the item count) to an engine whose readers never write (seqlock: its
// readers note sequences and validate; its recovery and its locked-iteration fallback
// check TableContext::read_only and refuse), and answers every write with a clear
// kPermissionDenied instead of a segmentation fault on the read-only mapping.
#include "engines/engine.hpp"

namespace shmht {
namespace {

class ReadOnlyEngine final : public EngineBase {
 public:
  explicit ReadOnlyEngine(std::unique_ptr<EngineBase> reader) : reader_(std::move(reader)) {}

  std::optional<std::size_t> get(const HashedKey& key, std::span<char> out) override { return reader_->get(key, out); }
  bool get(const HashedKey& key, std::string* out) override { return reader_->get(key, out); }
  bool contains(const HashedKey& key) override { return reader_->contains(key); }
  void lookup_batch(std::span<const HashedKey> keys, bool want_values, BatchAnswers& out) override {
    reader_->lookup_batch(keys, want_values, out);
  }
  void copy_home_range(std::uint64_t begin, std::uint64_t end, std::vector<KeyValue>* out) override {
    reader_->copy_home_range(begin, end, out);
  }
  std::int64_t item_count(Region& region) override { return reader_->item_count(region); }

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
  std::unique_ptr<EngineBase> reader_;
};

}  // namespace

std::unique_ptr<EngineBase> make_read_only_engine(std::unique_ptr<EngineBase> reader) {
  return std::make_unique<ReadOnlyEngine>(std::move(reader));
}

}  // namespace shmht
