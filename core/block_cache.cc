#include "core/block_cache.h"

#include <cstring>

namespace vshare {

const char* CacheHashName(CacheHash h) {
  return h == CacheHash::kModulo ? "modulo" : "mix";
}

Status ParseCacheHash(const std::string& name, CacheHash* out) {
  if (name == "modulo") *out = CacheHash::kModulo;
  else if (name == "mix") *out = CacheHash::kMix;
  else return Status::InvalidArgument("unknown cache hash '" + name + "' (use modulo or mix)");
  return Status::Ok();
}

Status CacheGeometry::ForBytes(uint64_t cache_bytes, uint32_t block_size, uint32_t ways,
                               CacheGeometry* out) {
  if (ways == 0) return Status::InvalidArgument("cache ways must be at least 1");
  uint64_t set_bytes = uint64_t{block_size} * ways;
  if (cache_bytes < set_bytes)
    return Status::InvalidArgument("cache size " + std::to_string(cache_bytes) +
                                   " bytes is smaller than one set (" + std::to_string(ways) +
                                   " ways of " + std::to_string(block_size) + " bytes)");
  uint64_t sets = cache_bytes / set_bytes;
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

BlockCache::BlockCache(const CacheGeometry& geometry)
    : geo_(geometry),
      arena_(new std::byte[geometry.capacity_bytes()]),
      slots_(geometry.capacity_blocks()),
      sets_(new SetState[geometry.sets]) {
  // Touch the arena now, so page faults (and the kernel's allocations behind
  // them) happen at start-up rather than on the write path.
  std::memset(arena_.get(), 0, geo_.capacity_bytes());
  for (size_t i = 0; i < slots_.size(); ++i) slots_[i].data = arena_.get() + i * geo_.block_size;
}

uint32_t BlockCache::SetOf(uint64_t block) const {
  uint64_t h = block;
  if (geo_.hash == CacheHash::kMix) {  // splitmix64 finaliser
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
  }
  return static_cast<uint32_t>(h % geo_.sets);
}

CacheCounters BlockCache::counters() const {
  CacheCounters c;
  c.hits = hits_;
  c.misses = misses_;
  c.insertions = insertions_;
  c.evictions = evictions_;
  c.used_blocks = used_;
  c.dirty_blocks = dirty_;
  return c;
}

void BlockCache::ResetCounters() {
  hits_ = 0;
  misses_ = 0;
  insertions_ = 0;
  evictions_ = 0;
}

BlockCache::LockedSet::LockedSet(BlockCache* cache, uint32_t index)
    : cache_(cache),
      index_(index),
      lock_(cache->sets_[index].mu),
      slots_(cache->slots_.data() + size_t{index} * cache->geo_.ways, cache->geo_.ways) {}

BlockCache::Slot* BlockCache::LockedSet::Peek(uint64_t block) {
  for (Slot& s : slots_)
    if (s.block == block) return &s;
  return nullptr;
}

BlockCache::Slot* BlockCache::LockedSet::Lookup(uint64_t block) {
  Slot* s = Peek(block);
  if (s) {
    s->last_use = ++cache_->sets_[index_].clock;
    ++cache_->hits_;
  } else {
    ++cache_->misses_;
  }
  return s;
}

BlockCache::Slot* BlockCache::LockedSet::ChooseVictim() {
  Slot* victim = &slots_[0];
  for (Slot& s : slots_) {
    if (s.empty()) return &s;
    if (s.last_use < victim->last_use) victim = &s;
  }
  return victim;
}

void BlockCache::LockedSet::Install(Slot* slot, uint64_t block) {
  // A dirty slot reaching here would lose data: that is a caller bug.
  if (slot->dirty) std::abort();
  if (slot->empty()) ++cache_->used_;
  else ++cache_->evictions_;
  slot->block = block;
  slot->last_use = ++cache_->sets_[index_].clock;
  ++cache_->insertions_;
}

void BlockCache::LockedSet::MarkDirty(Slot* slot) {
  if (!slot->dirty) {
    slot->dirty = true;
    ++cache_->dirty_;
  }
}

void BlockCache::LockedSet::MarkClean(Slot* slot) {
  if (slot->dirty) {
    slot->dirty = false;
    --cache_->dirty_;
  }
}

void BlockCache::LockedSet::Drop(Slot* slot) {
  if (slot->dirty) std::abort();
  if (!slot->empty()) {
    slot->block = kNoBlock;
    slot->last_use = 0;
    --cache_->used_;
  }
}

}  // namespace vshare
