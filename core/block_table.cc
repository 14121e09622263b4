#include "core/block_table.h"

#include <algorithm>
#include <cstring>
#include <new>

#include <sys/mman.h>

namespace vshare {

const char* CacheHashName(CacheHash h) { return h == CacheHash::kModulo ? "modulo" : "mix"; }

Status ParseCacheHash(const std::string& name, CacheHash* out) {
  if (name == "modulo") *out = CacheHash::kModulo;
  else if (name == "mix") *out = CacheHash::kMix;
  else return Status::InvalidArgument("unknown cache hash '" + name + "' (use modulo or mix)");
  return Status::Ok();
}

Status CacheGeometry::ForBytes(uint64_t cache_bytes, uint32_t block_size, uint32_t ways, CacheGeometry* out) {
  if (ways == 0) return Status::InvalidArgument("cache ways must be at least 1");
  const uint64_t set_bytes = uint64_t{block_size} * ways;
  if (cache_bytes < set_bytes)
    return Status::InvalidArgument("cache size " + std::to_string(cache_bytes) + " bytes is smaller than one set (" +
                                   std::to_string(ways) + " ways of " + std::to_string(block_size) + " bytes)");
  const uint64_t sets = cache_bytes / set_bytes;
  if (sets > UINT32_MAX) return Status::InvalidArgument("cache size too large");
  out->block_size = block_size;
  out->ways = ways;
  out->sets = static_cast<uint32_t>(sets);
  return Status::Ok();
}

void CacheGeometry::CapAt(uint64_t blocks) {
  uint64_t need = (blocks + ways - 1) / ways;
  if (need < 1) need = 1;
  if (need < sets) sets = static_cast<uint32_t>(need);
}

BlockTable::BlockTable(const Options& opts)
    : opts_(opts),
      slots_(opts.geometry.capacity_blocks()),
      sets_(new Set[opts.geometry.sets]),
      dirty_words_((opts.geometry.sets + 63) / 64) {
  dirty_sets_.reset(new std::atomic<uint64_t>[dirty_words_]);
  for (size_t i = 0; i < dirty_words_; ++i) dirty_sets_[i].store(0);
  if (opts_.keep_data) {
    // Mapped, not allocated: zero until written, in huge pages where the
    // kernel allows them (a page fault per 2 MiB instead of per 4 KiB).
    const size_t n = opts_.geometry.capacity_bytes();
    void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    madvise(p, n, MADV_HUGEPAGE);  // advice: ignored where not supported
    arena_ = static_cast<uint8_t*>(p);
    for (size_t i = 0; i < slots_.size(); ++i) slots_[i].data = arena_ + i * opts_.geometry.block_size;
  }
}

BlockTable::~BlockTable() {
  if (arena_) munmap(arena_, opts_.geometry.capacity_bytes());
}

void BlockTable::Prefault() {
  if (!arena_) return;
  const size_t n = opts_.geometry.capacity_bytes();
  volatile uint8_t* p = arena_;
  for (size_t off = 0; off < n; off += 4096) p[off] = p[off];
}

uint32_t BlockTable::SetOf(uint64_t block) const {
  uint64_t h = block;
  if (opts_.geometry.hash == CacheHash::kMix) {  // splitmix64 finaliser
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
  }
  return static_cast<uint32_t>(h % opts_.geometry.sets);
}

BlockTable::Locked::Locked(BlockTable* t, uint32_t index)
    : table_(t),
      index_(index),
      lock_(t->sets_[index].mu),
      slots_(t->slots_.data() + size_t{index} * t->opts_.geometry.ways, t->opts_.geometry.ways) {}

BlockTable::Slot* BlockTable::Locked::Find(uint64_t block) {
  for (Slot& s : slots_)
    if (s.block == block) return &s;
  return nullptr;
}

void BlockTable::Locked::Touch(Slot* s) { s->last_use = ++table_->sets_[index_].clock; }

void BlockTable::Locked::MarkDirty(Slot* s) {
  if (s->dirty) return;
  s->dirty = true;
  table_->dirty_.fetch_add(1, std::memory_order_relaxed);
  if (table_->sets_[index_].dirty++ == 0) table_->SetDirtyBit(index_, true);
}

void BlockTable::Locked::MarkClean(Slot* s) {
  if (!s->dirty) return;
  s->dirty = false;
  table_->dirty_.fetch_sub(1, std::memory_order_relaxed);
  if (--table_->sets_[index_].dirty == 0) table_->SetDirtyBit(index_, false);
}

// Both callers hold the set's lock, so a set's bit always follows its count;
// the word is shared with other sets, hence the atomic update.
void BlockTable::SetDirtyBit(uint32_t set, bool on) {
  const uint64_t bit = uint64_t{1} << (set % 64);
  if (on) dirty_sets_[set / 64].fetch_or(bit, std::memory_order_relaxed);
  else dirty_sets_[set / 64].fetch_and(~bit, std::memory_order_relaxed);
}

Perm BlockTable::HeldOf(const Slot& s) const {
  if (opts_.is_root) return Perm::kWrite;
  return s.gen == gen_.load(std::memory_order_acquire) ? s.held : Perm::kNone;
}

Perm BlockTable::LocalPerm(const Slot& s, int64_t now_ns) const {
  if (s.busy || s.fenced || s.empty()) return Perm::kNone;
  if (now_ns < from_ns_.load(std::memory_order_acquire) || now_ns >= until_ns_.load(std::memory_order_acquire))
    return Perm::kNone;
  if (!opts_.is_root && now_ns >= s.expiry_ns) return Perm::kNone;
  const Perm held = HeldOf(s);
  if (held == Perm::kNone) return Perm::kNone;
  if (s.holders != 0 && s.child_writes) return Perm::kNone;
  if (held == Perm::kWrite && s.holders == 0) return Perm::kWrite;
  return Perm::kRead;
}

bool BlockTable::ReadHit(uint64_t block, size_t off, std::span<uint8_t> out, int64_t now_ns) {
  Locked set = Lock(block);
  Slot* s = set.Find(block);
  if (!s || !s->valid || LocalPerm(*s, now_ns) < Perm::kRead) return false;
  if (s->data) std::memcpy(out.data(), s->data + off, out.size());
  else std::memset(out.data(), 0, out.size());
  ++s->reads;
  set.Touch(s);
  if (s->prefetched) {
    s->prefetched = false;
    readahead_hits_.fetch_add(1, std::memory_order_relaxed);
  }
  hits_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

uint32_t BlockTable::ReadCount(uint64_t block) {
  Locked set = Lock(block);
  const Slot* s = set.Find(block);
  return s ? s->reads : 0;
}

bool BlockTable::FenceIfUnread(uint64_t block, uint32_t count) {
  Locked set = Lock(block);
  Slot* s = set.Find(block);
  if (!s) return true;
  if (s->reads != count) return false;
  s->fenced = true;
  return true;
}

void BlockTable::Fence(uint64_t block) {
  Locked set = Lock(block);
  if (Slot* s = set.Find(block)) s->fenced = true;
}

void BlockTable::Unfence(uint64_t block) {
  Locked set = Lock(block);
  if (Slot* s = set.Find(block)) s->fenced = false;
}

bool BlockTable::WriteHit(uint64_t block, size_t off, std::span<const uint8_t> in, int64_t now_ns, WriteMark* mark) {
  if (write_through_.load(std::memory_order_relaxed)) return false;
  const bool whole = off == 0 && in.size() == block_size();
  Locked set = Lock(block);
  Slot* s = set.Find(block);
  if (!s || (!s->valid && !whole) || LocalPerm(*s, now_ns) != Perm::kWrite ||
      now_ns >= write_until_ns_.load(std::memory_order_acquire))
    return false;
  if (s->data) std::memcpy(s->data + off, in.data(), in.size());
  s->valid = true;
  s->prefetched = false;
  s->version = opts_.is_root ? NextVersion() : 0;  // below the root: unknown until it comes down again
  ++s->writes;
  set.MarkDirty(s);
  set.Touch(s);
  hits_.fetch_add(1, std::memory_order_relaxed);
  if (mark) *mark = MarkOf(*s);
  return true;
}

void BlockTable::SetWindow(int64_t from_ns, int64_t until_ns, int64_t write_until_ns) {
  from_ns_.store(from_ns, std::memory_order_release);
  until_ns_.store(until_ns, std::memory_order_release);
  write_until_ns_.store(write_until_ns, std::memory_order_release);
}

void BlockTable::SetVersionEpoch(uint64_t epoch) {
  epoch_.store(epoch, std::memory_order_relaxed);
  counter_.store(0, std::memory_order_relaxed);
}

uint64_t BlockTable::NextVersion() {
  return (epoch_.load(std::memory_order_relaxed) << kVersionCounterBits) |
         (counter_.fetch_add(1, std::memory_order_relaxed) + 1);
}

BlockTable::Slot* BlockTable::ChooseVictim(Locked& set, const std::function<bool(uint64_t)>& pinned) {
  Slot* cheap = nullptr;
  Slot* costly = nullptr;
  for (Slot& s : set.slots()) {
    if (s.empty()) return &s;
    if (s.busy || pinned(s.block)) continue;
    Slot*& best = Droppable(s) ? cheap : costly;
    if (!best || s.last_use < best->last_use) best = &s;
  }
  return cheap ? cheap : costly;
}

void BlockTable::Install(Locked& set, Slot* slot, uint64_t block) {
  if (!slot->empty()) {
    if (!Droppable(*slot)) std::abort();  // a caller bug that would lose data or grants
    evictions_.fetch_add(1, std::memory_order_relaxed);
  } else {
    used_.fetch_add(1, std::memory_order_relaxed);
  }
  *slot = Slot{.block = block, .writes = slot->writes, .data = slot->data};
  slot->held = opts_.is_root ? Perm::kWrite : Perm::kNone;
  slot->gen = gen_.load(std::memory_order_acquire);
  set.Touch(slot);
  insertions_.fetch_add(1, std::memory_order_relaxed);
}

void BlockTable::Free(Locked&, Slot* slot) {
  if (slot->empty()) return;
  if (!Droppable(*slot)) std::abort();
  *slot = Slot{.writes = slot->writes, .data = slot->data};
  used_.fetch_sub(1, std::memory_order_relaxed);
}

std::vector<uint64_t> BlockTable::DirtyBlocks() {
  std::vector<uint64_t> out;
  for (size_t w = 0; w < dirty_words_; ++w) {
    uint64_t bits = dirty_sets_[w].load(std::memory_order_relaxed);
    while (bits) {
      const int b = __builtin_ctzll(bits);
      bits &= bits - 1;
      Locked set = LockSet(static_cast<uint32_t>(w * 64 + b));
      for (const Slot& s : set.slots())
        if (s.dirty) out.push_back(s.block);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

void BlockTable::ForEach(const std::function<void(Locked&, Slot&)>& fn) {
  for (uint32_t i = 0; i < opts_.geometry.sets; ++i) {
    Locked set = LockSet(i);
    for (Slot& s : set.slots()) fn(set, s);
  }
}

bool BlockTable::SweepHolders(uint64_t mask, uint32_t sets, bool start_pass) {
  const uint32_t total = opts_.geometry.sets;
  if (start_pass) sweep_done_ = 0;
  for (uint32_t n = 0; n < sets && sweep_done_ < total; ++n, ++sweep_done_) {
    Locked set = LockSet(sweep_next_);
    for (Slot& s : set.slots()) {
      s.holders &= ~mask;
      if (s.holders == 0) s.child_writes = false;
    }
    sweep_next_ = (sweep_next_ + 1) % total;
  }
  return sweep_done_ >= total;
}

CacheCounters BlockTable::counters() const {
  CacheCounters c;
  c.hits = hits_.load(std::memory_order_relaxed);
  c.misses = misses_.load(std::memory_order_relaxed);
  c.insertions = insertions_.load(std::memory_order_relaxed);
  c.evictions = evictions_.load(std::memory_order_relaxed);
  c.readahead_hits = readahead_hits_.load(std::memory_order_relaxed);
  c.readahead_blocks = readahead_blocks_.load(std::memory_order_relaxed);
  c.used_blocks = used_.load(std::memory_order_relaxed);
  c.dirty_blocks = dirty_.load(std::memory_order_relaxed);
  return c;
}

void BlockTable::ResetCounters() {
  for (auto* c : {&hits_, &misses_, &insertions_, &evictions_, &readahead_hits_, &readahead_blocks_})
    c->store(0, std::memory_order_relaxed);
}

}  // namespace vshare
