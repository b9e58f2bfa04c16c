// store_registry.cpp - the list every store file adds itself to.
#include <algorithm>

#include "store.hpp"

namespace shmht::harness {
namespace {

// A function-local static: store files register from their own static initialisers,
// whose order across files is unspecified.
std::vector<StoreKind>& registry() {
  static std::vector<StoreKind> kinds;
  return kinds;
}

}  // namespace

std::string_view store_family_name(StoreFamily family) {
  switch (family) {
    case StoreFamily::kEngine: return "engine";
    case StoreFamily::kPeer: return "peer";
    case StoreFamily::kBaseline: return "baseline";
  }
  return "unknown";
}

StoreRegistration::StoreRegistration(StoreKind kind) {
  auto& kinds = registry();
  kinds.push_back(std::move(kind));
  // Engines first, then peers, then baselines; registration order within a family
  // (engines register in shmht::kAllEngines order).
  std::stable_sort(kinds.begin(), kinds.end(),
                   [](const StoreKind& a, const StoreKind& b) { return a.family < b.family; });
}

const std::vector<StoreKind>& store_kinds() { return registry(); }

const StoreKind* find_store_kind(std::string_view name) {
  for (const StoreKind& k : registry()) {
    if (k.name == name) return &k;
  }
  return nullptr;
}

}  // namespace shmht::harness
