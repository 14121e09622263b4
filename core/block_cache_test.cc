#include "core/block_cache.h"

#include <doctest/doctest.h>

using namespace vshare;

namespace {
CacheGeometry Geo(uint32_t sets, uint32_t ways, CacheHash h = CacheHash::kModulo) {
  CacheGeometry g;
  g.block_size = 512;
  g.sets = sets;
  g.ways = ways;
  g.hash = h;
  return g;
}

// Makes `block` resident the way Volume does: look up, else install.
void Touch(BlockCache& c, uint64_t block) {
  auto set = c.LockFor(block);
  if (!set.Lookup(block)) set.Install(set.ChooseVictim(), block);
}

bool Resident(BlockCache& c, uint64_t block) { return c.LockFor(block).Peek(block) != nullptr; }
}  // namespace

TEST_CASE("geometry from a byte budget") {
  CacheGeometry g;
  REQUIRE(CacheGeometry::ForBytes(1 << 20, 4096, 8, &g).ok());
  CHECK(g.sets == 32);
  CHECK(g.capacity_bytes() == 1 << 20);
  CHECK_FALSE(CacheGeometry::ForBytes(4096, 4096, 8, &g).ok());  // less than one set
  CHECK_FALSE(CacheGeometry::ForBytes(1 << 20, 4096, 0, &g).ok());
}

TEST_CASE("a cache is never larger than its volume") {
  CacheGeometry g;
  REQUIRE(CacheGeometry::ForBytes(64 << 20, 4096, 8, &g).ok());
  g.CapAt(100);  // a 100-block volume
  CHECK(g.sets == 13);
  CHECK(g.capacity_blocks() >= 100);
  g.CapAt(0);
  CHECK(g.sets == 1);
}

TEST_CASE("miss then hit") {
  BlockCache c(Geo(4, 2));
  Touch(c, 10);
  CHECK(c.counters().misses == 1);
  CHECK(c.counters().hits == 0);
  Touch(c, 10);
  CHECK(c.counters().hits == 1);
  CHECK(c.counters().used_blocks == 1);
  CHECK(c.counters().evictions == 0);
}

TEST_CASE("set conflicts evict in LRU order within the set only") {
  BlockCache c(Geo(4, 2));  // modulo: blocks 1, 5, 9 share set 1
  Touch(c, 1);
  Touch(c, 5);
  Touch(c, 2);  // another set: no effect on set 1
  Touch(c, 1);  // 1 becomes most recent, 5 least
  Touch(c, 9);  // set 1 is full: evicts 5
  CHECK(Resident(c, 1));
  CHECK_FALSE(Resident(c, 5));
  CHECK(Resident(c, 9));
  CHECK(Resident(c, 2));
  CHECK(c.counters().evictions == 1);
  Touch(c, 13);  // evicts 1 (older than 9)
  CHECK_FALSE(Resident(c, 1));
  CHECK(Resident(c, 9));
  CHECK(c.counters().evictions == 2);
  CHECK(c.counters().used_blocks == 3);
}

TEST_CASE("an empty way is used before anything is evicted") {
  BlockCache c(Geo(1, 4));
  for (uint64_t b = 0; b < 4; ++b) Touch(c, b);
  CHECK(c.counters().evictions == 0);
  Touch(c, 4);
  CHECK(c.counters().evictions == 1);
  CHECK_FALSE(Resident(c, 0));
}

TEST_CASE("mix hash spreads a stride that modulo piles into one set") {
  BlockCache mod(Geo(8, 2, CacheHash::kModulo));
  BlockCache mix(Geo(8, 2, CacheHash::kMix));
  for (uint64_t i = 0; i < 8; ++i) {
    Touch(mod, i * 8);  // all in set 0 under modulo
    Touch(mix, i * 8);
  }
  CHECK(mod.counters().evictions == 6);
  CHECK(mix.counters().evictions < 6);
}

TEST_CASE("dirty accounting and reset") {
  BlockCache c(Geo(2, 2));
  Touch(c, 3);
  {
    auto set = c.LockFor(3);
    auto* s = set.Peek(3);
    set.MarkDirty(s);
    set.MarkDirty(s);  // idempotent
  }
  CHECK(c.counters().dirty_blocks == 1);
  {
    auto set = c.LockFor(3);
    set.MarkClean(set.Peek(3));
    set.Drop(set.Peek(3));
  }
  CHECK(c.counters().dirty_blocks == 0);
  CHECK(c.counters().used_blocks == 0);
  c.ResetCounters();
  CHECK(c.counters().misses == 0);
}

TEST_CASE("the victim of a full set of dirty blocks is reported dirty") {
  BlockCache c(Geo(1, 2));
  Touch(c, 0);
  Touch(c, 1);
  auto set = c.LockFor(2);
  for (auto& s : set.slots()) set.MarkDirty(&s);
  CHECK(set.ChooseVictim()->dirty);  // the caller must write it back first
}
