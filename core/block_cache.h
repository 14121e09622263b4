// BlockCache: one level of set-associative software cache for volume blocks.
//
// The cache holds sets() * ways() block-sized slots in one arena allocated at
// construction, so the I/O path never allocates. A block maps to exactly one
// set (by the configured hash) and may sit in any way of it; within a set the
// least recently used slot is replaced first.
//
// Locking: each set has its own mutex. All access goes through a LockedSet,
// which holds that mutex for its lifetime, so the set's lock is also the lock
// of every block that maps to it. Callers never hold two LockedSets at once.
//
// The cache does no I/O. Writing back a dirty slot before it is reused, and
// filling a slot from the store, are the caller's job (see Volume); a dirty
// slot can never be replaced or dropped, so its data cannot be lost here.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"

namespace vshare {

enum class CacheHash {
  kModulo,  // set = block % sets: neighbours land in neighbouring sets
  kMix,     // set = mix64(block) % sets: breaks up strided patterns
};
const char* CacheHashName(CacheHash h);
Status ParseCacheHash(const std::string& name, CacheHash* out);

struct CacheGeometry {
  uint32_t block_size = 4096;
  uint32_t sets = 1;
  uint32_t ways = 8;
  CacheHash hash = CacheHash::kModulo;

  uint64_t capacity_blocks() const { return uint64_t{sets} * ways; }
  uint64_t capacity_bytes() const { return capacity_blocks() * block_size; }

  // The largest geometry with `ways` ways that fits in `cache_bytes`. Fails
  // when not even one set of `ways` blocks fits, or `ways` is 0.
  static Status ForBytes(uint64_t cache_bytes, uint32_t block_size, uint32_t ways,
                         CacheGeometry* out);
  // Shrinks the set count so the cache holds no more than `blocks` blocks
  // (rounded up to whole sets): memory beyond a volume's size is never used.
  void CapAt(uint64_t blocks);
};

// Monotonic counters (reset only by ResetCounters) and current occupancy.
struct CacheCounters {
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t insertions = 0;
  uint64_t evictions = 0;  // a valid block replaced to make room
  uint64_t used_blocks = 0;
  uint64_t dirty_blocks = 0;
};

class BlockCache {
 public:
  static constexpr uint64_t kNoBlock = ~uint64_t{0};

  struct Slot {
    uint64_t block = kNoBlock;  // kNoBlock when empty
    uint64_t last_use = 0;      // per-set clock value of the last touch
    bool dirty = false;         // newer than the store; must be written back
    std::byte* data = nullptr;  // block_size bytes in the arena
    bool empty() const { return block == kNoBlock; }
    std::span<std::byte> bytes(uint32_t block_size) const { return {data, block_size}; }
  };

  // A set, locked. Pointers to its slots are valid while it is held.
  class LockedSet {
   public:
    LockedSet(LockedSet&&) = default;
    LockedSet& operator=(LockedSet&&) = delete;

    // Finds `block`, counting a hit or a miss; a hit becomes most recent.
    Slot* Lookup(uint64_t block);
    // Finds `block` without counting or touching.
    Slot* Peek(uint64_t block);
    // The slot a new block should go into: an empty one, else the least
    // recently used. It may be dirty; the caller writes it back first.
    Slot* ChooseVictim();
    // Puts `block` into `slot` (clean, most recent). The slot must not be
    // dirty. Counts an eviction when it held another block.
    void Install(Slot* slot, uint64_t block);
    void MarkDirty(Slot* slot);
    void MarkClean(Slot* slot);
    // Empties a clean slot.
    void Drop(Slot* slot);
    std::span<Slot> slots() { return slots_; }
    uint32_t index() const { return index_; }

   private:
    friend class BlockCache;
    LockedSet(BlockCache* cache, uint32_t index);
    BlockCache* cache_;
    uint32_t index_;
    std::unique_lock<std::mutex> lock_;
    std::span<Slot> slots_;
  };

  explicit BlockCache(const CacheGeometry& geometry);
  BlockCache(const BlockCache&) = delete;
  BlockCache& operator=(const BlockCache&) = delete;

  const CacheGeometry& geometry() const { return geo_; }
  uint32_t SetOf(uint64_t block) const;
  LockedSet LockFor(uint64_t block) { return LockedSet(this, SetOf(block)); }
  LockedSet LockSet(uint32_t index) { return LockedSet(this, index); }

  CacheCounters counters() const;
  void ResetCounters();  // hits, misses, insertions, evictions; not occupancy

 private:
  struct SetState {
    std::mutex mu;
    uint64_t clock = 0;  // guarded by mu
  };

  const CacheGeometry geo_;
  std::unique_ptr<std::byte[]> arena_;
  std::vector<Slot> slots_;  // sets * ways, set-major
  std::unique_ptr<SetState[]> sets_;
  std::atomic<uint64_t> hits_{0}, misses_{0}, insertions_{0}, evictions_{0};
  std::atomic<uint64_t> used_{0}, dirty_{0};
};

}  // namespace vshare
