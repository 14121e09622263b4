#include "core/block_table.h"

namespace vshare {

std::vector<Action> BlockTable::Apply(uint64_t block, const Event& event) {
  Shard& shard = shards_[block % kShards];
  std::lock_guard lock(shard.mu);
  auto it = shard.entries.find(block);
  // Writes to untracked blocks stay untracked (see the header).
  if (it == shard.entries.end() && event.kind == Event::Kind::kWriteDone) return {};
  const BlockState current = it == shard.entries.end() ? Default() : it->second;
  Transition t = Step(current, event);
  if (t.next == Default()) {
    if (it != shard.entries.end()) shard.entries.erase(it);
  } else if (it != shard.entries.end()) {
    it->second = std::move(t.next);
  } else {
    shard.entries.emplace(block, std::move(t.next));
  }
  return std::move(t.actions);
}

bool BlockTable::GrantLocalFast(uint64_t block, Perm want) const {
  if (default_held_ < want) return false;
  const Shard& shard = shards_[block % kShards];
  std::lock_guard lock(shard.mu);
  return shard.entries.find(block) == shard.entries.end();
}

BlockState BlockTable::Get(uint64_t block) const {
  const Shard& shard = shards_[block % kShards];
  std::lock_guard lock(shard.mu);
  auto it = shard.entries.find(block);
  return it == shard.entries.end() ? Default() : it->second;
}

size_t BlockTable::tracked() const {
  size_t n = 0;
  for (const Shard& s : shards_) {
    std::lock_guard lock(s.mu);
    n += s.entries.size();
  }
  return n;
}

}  // namespace vshare
