// BlockTable: one node's copies of a volume's blocks and everything it knows
// about them. It is the node's block cache and its block table at once: a
// block this node holds a permission on, has granted to a child, or keeps
// bytes of, has a slot here, and nothing else is remembered. So the table
// is bounded by --cache-size on every node, and a node's subtree can hold
// only what the node itself has room for (an evicted slot's grants are
// recalled first).
//
// Layout: sets() * ways() slots, each with one block's bytes in an arena
// allocated (and touched) at construction, so serving never allocates. A
// block maps to one set by the configured hash and may sit in any way of
// it; within a set the least recently used slot goes first.
//
// Who touches what:
//  - The fast path (fuse/ threads, through Volume) reads and writes the
//    bytes of a block whose local permission allows it, and marks it dirty.
//  - The protocol engine (core/replica.h, one thread) does everything else:
//    installs and evicts blocks, sets permissions and grants, moves bytes
//    in and out.
// Every field of a slot is guarded by the mutex of its set (Locked below).
// Holding that lock is also how the engine waits for the fast path: it
// takes a permission away under the lock, so once it has the lock no reader
// of the old permission is still copying.
//
// Locks: one set at a time, never two; nothing blocks while holding one.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "core/coherence.h"
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
  static Status ForBytes(uint64_t cache_bytes, uint32_t block_size, uint32_t ways, CacheGeometry* out);
  // Shrinks the set count so the cache holds no more than `blocks` blocks
  // (rounded up to whole sets): memory beyond a volume's size is never used.
  void CapAt(uint64_t blocks);
};

// Counters kept as things change (relaxed atomics); occupancy is current.
struct CacheCounters {
  uint64_t hits = 0;          // blocks the fast path served
  uint64_t misses = 0;        // blocks the fast path sent to the engine
  uint64_t insertions = 0;
  uint64_t evictions = 0;     // a block's slot given to another block
  uint64_t readahead_hits = 0;  // first reads of blocks read ahead
  uint64_t readahead_blocks = 0;  // blocks read ahead
  uint64_t used_blocks = 0;
  uint64_t dirty_blocks = 0;
};

class BlockTable {
 public:
  static constexpr uint64_t kNoBlock = ~uint64_t{0};
  // Children are told apart by a bit in a slot's holders.
  static constexpr int kMaxChildren = 64;

  struct Options {
    CacheGeometry geometry;
    uint64_t volume_size = 0;
    bool is_root = false;
    // False: no arena and no bytes (large simulations). Reads see zeros and
    // writes are dropped; everything else is kept as usual.
    bool keep_data = true;
  };

  struct Slot {
    uint64_t block = kNoBlock;
    uint64_t version = 0;       // the bytes' version (doc/protocol.md, VERSION)
    int64_t expiry_ns = 0;      // below the root: this node's grant ends then
    uint64_t holders = 0;       // bit i: child index i holds a grant
    uint32_t last_use = 0;      // per-set clock of the last touch
    uint32_t gen = 0;           // `held` counts only while it equals the table's
    uint32_t writes = 0;        // bumped by every write, never reset (see WriteMark)
    Perm held = Perm::kNone;    // from the parent; the root holds WRITE on all
    bool child_writes = false;  // the one holder holds WRITE, not READ
    bool valid = false;         // the bytes are here
    bool dirty = false;         // newer than the parent's copy (the store's, at the root)
    bool busy = false;          // the engine is moving the bytes: the fast path stays out
    bool prefetched = false;    // read ahead and not read since
    bool forwarded = false;     // semi-sync: the bytes went to the parent alone
    bool fenced = false;        // --kernel-cache: the kernel's pages are being dropped; the fast path stays out
    uint32_t reads = 0;         // bumped by every fast-path read (kernel_pages.h's rounds compare it)
    uint8_t* data = nullptr;    // block_size bytes (nullptr without keep_data)
    bool empty() const { return block == kNoBlock; }
  };

  // A set, locked; pointers to its slots are good while it is held.
  class Locked {
   public:
    Locked(Locked&&) = default;
    Slot* Find(uint64_t block);
    std::span<Slot> slots() { return slots_; }
    uint32_t index() const { return index_; }
    void Touch(Slot* s);
    void MarkDirty(Slot* s);
    void MarkClean(Slot* s);
    // Marks `s` clean if nothing was written to it since `writes` was read.
    void MarkCleanIf(Slot* s, uint32_t writes) {
      if (s->writes == writes) MarkClean(s);
    }

   private:
    friend class BlockTable;
    Locked(BlockTable* t, uint32_t index);
    BlockTable* table_;
    uint32_t index_;
    std::unique_lock<std::mutex> lock_;
    std::span<Slot> slots_;
  };

  explicit BlockTable(const Options& opts);
  ~BlockTable();
  // Touches every page of the arena, so that the page faults (and the
  // kernel's allocations behind them) happen at start-up rather than on
  // the I/O path. Call it in the process that serves (after any fork).
  void Prefault();
  BlockTable(const BlockTable&) = delete;
  BlockTable& operator=(const BlockTable&) = delete;

  const CacheGeometry& geometry() const { return opts_.geometry; }
  uint32_t block_size() const { return opts_.geometry.block_size; }
  uint64_t volume_size() const { return opts_.volume_size; }
  uint64_t block_count() const { return (opts_.volume_size + block_size() - 1) / block_size(); }
  bool is_root() const { return opts_.is_root; }
  bool keeps_data() const { return opts_.keep_data; }
  uint32_t SetOf(uint64_t block) const;
  Locked Lock(uint64_t block) { return Locked(this, SetOf(block)); }
  Locked LockSet(uint32_t index) { return Locked(this, index); }

  // ---- The fast path (any thread) ----
  // Copies bytes [off, off + out.size()) of `block` into `out` if this node
  // may read it now: the bytes are here, the permission allows reading, and
  // neither the lease nor the block's grant has run out at `now_ns`
  // (steady clock). False: the engine must act.
  bool ReadHit(uint64_t block, size_t off, std::span<uint8_t> out, int64_t now_ns);
  // Which bytes a slot holds: the slot, and its write count. A slot's count
  // goes on across the blocks it holds, so while both still match, nothing
  // has been written there since, and the slot still holds the same block
  // (Find looked it up by block) with the same bytes.
  struct WriteMark {
    uint32_t slot = UINT32_MAX;
    uint32_t writes = 0;
  };
  WriteMark MarkOf(const Slot& s) const { return {static_cast<uint32_t>(&s - slots_.data()), s.writes}; }
  // Likewise for a write: WRITE permission, and the bytes here unless the
  // write covers the whole block. Marks the block dirty and gives it its new
  // version; *mark (if given) is the slot's mark just after the write.
  bool WriteHit(uint64_t block, size_t off, std::span<const uint8_t> in, int64_t now_ns, WriteMark* mark = nullptr);
  // --kernel-cache (core/kernel_pages.h): the count of fast-path reads of
  // `block` so far; and fencing it (the fast path stays out) only if no
  // read was served since `count` was taken. True when fenced or absent.
  uint32_t ReadCount(uint64_t block);
  bool FenceIfUnread(uint64_t block, uint32_t count);
  void Fence(uint64_t block);
  void Unfence(uint64_t block);
  // What local access may do with `s` now (its lock held): NONE while the
  // engine moves its bytes, while it is fenced, or a child holds WRITE; WRITE when this node
  // holds it and no child holds anything; READ otherwise, if held.
  Perm LocalPerm(const Slot& s, int64_t now_ns) const;

  // ---- Published by the engine, read by the fast path ----
  // Local access is allowed in [from, until) (steady ns): below the root,
  // until the lease lapses; at a root with a peer, while it has authority
  // and no takeover grace runs.
  // Writes also stop at `write_until_ns` (the link to the parent is down:
  // what is written then may be lost with it).
  void SetWindow(int64_t from_ns, int64_t until_ns, int64_t write_until_ns);
  // A root with a peer writes every block through to the store before it
  // answers: no write is served by the fast path then.
  void SetWriteThrough(bool on) { write_through_ = on; }
  bool write_through() const { return write_through_; }
  // Versions (the root): epoch in the top 24 bits, a counter below.
  static constexpr int kVersionCounterBits = 40;
  void SetVersionEpoch(uint64_t epoch);
  uint64_t NextVersion();
  // Permissions held from the parent are void once the generation moves on
  // (a rejoin): no pass over the slots is needed.
  uint32_t generation() const { return gen_.load(std::memory_order_acquire); }
  void NewGeneration() { gen_.fetch_add(1, std::memory_order_acq_rel); }
  Perm HeldOf(const Slot& s) const;

  // ---- The engine (its thread only) ----
  // The slot to put `block` in, in its locked set: an empty one, else the
  // least recently used one that `pinned` does not claim, preferring one
  // that can be dropped at once (Droppable). nullptr when every way is
  // pinned. The caller evicts what is there, or Installs over it.
  Slot* ChooseVictim(Locked& set, const std::function<bool(uint64_t)>& pinned);
  // A slot whose copy may be forgotten without telling anyone but the
  // parent: clean, not forwarded, granted to no child, no bytes in motion.
  static bool Droppable(const Slot& s) { return !s.dirty && !s.forwarded && s.holders == 0 && !s.busy; }
  // Puts `block` into `slot` (which must be empty or Droppable), with no
  // bytes and no permission (the root: WRITE).
  void Install(Locked& set, Slot* slot, uint64_t block);
  // Empties a slot that is Droppable.
  void Free(Locked& set, Slot* slot);
  // The dirty blocks, in block order, found through a per-set index (no
  // pass over clean sets).
  std::vector<uint64_t> DirtyBlocks();
  size_t DirtyCount() const { return dirty_.load(std::memory_order_relaxed); }
  // Visits every slot, set by set: for the rare operations that concern
  // everything (drop the cache, take over).
  void ForEach(const std::function<void(Locked&, Slot&)>& fn);
  // Clears the holder bits in `mask` from `sets` sets, starting where the
  // previous call stopped. True when a whole pass since `start_pass` is done.
  bool SweepHolders(uint64_t mask, uint32_t sets, bool start_pass);

  CacheCounters counters() const;
  void ResetCounters();
  void CountMisses(uint64_t n) { misses_.fetch_add(n, std::memory_order_relaxed); }
  void CountReadahead(uint64_t n) { readahead_blocks_.fetch_add(n, std::memory_order_relaxed); }
  // A block left to make room for another (evicted through the protocol).
  void CountEviction() { evictions_.fetch_add(1, std::memory_order_relaxed); }

 private:
  struct Set {
    std::mutex mu;
    uint32_t clock = 0;
    uint32_t dirty = 0;  // dirty slots in this set
  };
  void SetDirtyBit(uint32_t set, bool on);

  const Options opts_;
  uint8_t* arena_ = nullptr;  // the slots' bytes, mapped (null without bytes)
  std::vector<Slot> slots_;  // sets * ways, set-major
  std::unique_ptr<Set[]> sets_;
  std::unique_ptr<std::atomic<uint64_t>[]> dirty_sets_;  // bit per set with dirty slots
  size_t dirty_words_ = 0;
  std::atomic<int64_t> from_ns_{0}, until_ns_{INT64_MAX}, write_until_ns_{INT64_MAX};
  std::atomic<uint64_t> epoch_{0}, counter_{0};
  std::atomic<uint32_t> gen_{1};
  std::atomic<bool> write_through_{false};
  uint32_t sweep_next_ = 0, sweep_done_ = 0;
  std::atomic<uint64_t> hits_{0}, misses_{0}, insertions_{0}, evictions_{0};
  std::atomic<uint64_t> readahead_hits_{0}, readahead_blocks_{0}, used_{0}, dirty_{0};
};

}  // namespace vshare
