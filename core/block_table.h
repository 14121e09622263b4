// BlockTable: the per-volume record of every block whose coherence state
// differs from the node's default, and the place where Step() is applied.
//
// A block with no entry has the default state: held = the node's default
// permission (WRITE on the root, NONE elsewhere), version 0, no grants. Only
// blocks that were granted, written while tracked, or frozen take memory, so
// a root with no children keeps an empty table.
//
// Versions are kept only for tracked blocks: a write to an untracked block
// does not create an entry. An untracked block's version is therefore
// unknown, not 0, and revalidation of it must re-send the data. A tracked
// block whose version moved stays tracked, so its version never goes back.
//
// Thread safety: all methods may be called concurrently. The table is split
// into shards, each with its own mutex; Apply() runs the step under the
// shard lock, so the read-modify-write of one block's state is atomic.
#pragma once

#include <array>
#include <functional>
#include <mutex>
#include <unordered_map>

#include "core/coherence.h"

namespace vshare {

class BlockTable {
 public:
  explicit BlockTable(Perm default_held) : default_held_(default_held) {}

  // Runs Step() on the block's state, stores the result, and returns the
  // actions. Entries that return to the default state are removed.
  std::vector<Action> Apply(uint64_t block, const Event& event);
  // The I/O fast path: true when local access with `want` is granted at once
  // (the block is untracked and the node's default permission covers it).
  // Allocates nothing. When false, go through Apply().
  bool GrantLocalFast(uint64_t block, Perm want) const;
  BlockState Get(uint64_t block) const;
  // Number of blocks with an entry.
  size_t tracked() const;
  Perm default_held() const { return default_held_; }

 private:
  static constexpr size_t kShards = 64;
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<uint64_t, BlockState> entries;  // guarded by mu
  };
  BlockState Default() const { return BlockState{default_held_, 0, false, {}}; }

  const Perm default_held_;
  std::array<Shard, kShards> shards_;
};

}  // namespace vshare
