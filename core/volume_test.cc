#include "core/volume.h"

#include <doctest/doctest.h>

#include <cstring>
#include <random>
#include <thread>

#include "core/mem_store.h"
#include "test/sim/inline_control.h"

using namespace vshare;

namespace {
constexpr uint32_t kBs = 512;

// A root alone: Volume over its table, the engine run inline over a store.
struct Fixture {
  std::unique_ptr<MemStore> store;
  std::unique_ptr<InlineControl> control;
  std::unique_ptr<Volume> vol;
  Fixture(uint64_t size, uint32_t sets, uint32_t ways, bool write_through = false)
      : store(std::make_unique<MemStore>(size, kBs)) {
    ReplicaConfig cfg;
    cfg.volume_name = "v";
    cfg.volume_size = size;
    cfg.block_size = kBs;
    cfg.cache_bytes = uint64_t{sets} * ways * kBs;
    cfg.cache_ways = ways;
    cfg.write_through = write_through;
    control = std::make_unique<InlineControl>(cfg, store.get());
    vol = std::make_unique<Volume>("v", control->table(), control.get());
    vol->set_readahead_max(0);
  }
};

std::vector<std::byte> Pattern(size_t n, uint32_t seed) {
  std::vector<std::byte> v(n);
  std::mt19937 rng(seed);
  for (auto& b : v) b = std::byte(rng() & 0xff);
  return v;
}
// Writes `blocks` blocks of a pattern, empties the cache, then reads the
// first `read` blocks back one by one in order, checking each; returns how
// many block reads the store saw for them.
uint64_t ReadThrough(Fixture& f, uint64_t blocks, uint64_t read, uint32_t seed) {
  auto data = Pattern(blocks * kBs, seed);
  size_t done;
  REQUIRE(f.vol->Write(0, data, &done).ok());
  REQUIRE(f.vol->DropCache().ok());
  const uint64_t before = f.store->reads();
  std::vector<std::byte> back(kBs);
  for (uint64_t b = 0; b < read; ++b) {
    REQUIRE(f.vol->Read(b * kBs, back, &done).ok());
    CHECK(std::memcmp(back.data(), data.data() + b * kBs, kBs) == 0);
  }
  return f.store->reads() - before;
}
}  // namespace

TEST_CASE("unaligned writes and reads round-trip through the cache") {
  Fixture f(64 * kBs, 4, 2);
  auto data = Pattern(3000, 1);
  size_t done = 0;
  REQUIRE(f.vol->Write(700, data, &done).ok());
  CHECK(done == 3000);
  std::vector<std::byte> back(3000);
  REQUIRE(f.vol->Read(700, back, &done).ok());
  CHECK(done == 3000);
  CHECK(back == data);
  // Nothing reached the store yet: writes are write-back.
  CHECK(f.store->writes() == 0);
  CHECK(f.vol->stats().cache.dirty_blocks == 7);  // bytes 700..3699 span blocks 1..7
  REQUIRE(f.vol->Flush().ok());
  CHECK(f.vol->stats().cache.dirty_blocks == 0);
  auto contents = f.store->Contents();
  CHECK(std::memcmp(contents.data() + 700, data.data(), data.size()) == 0);
  CHECK(f.store->syncs() == 1);
}

TEST_CASE("a partial write keeps the rest of the block; a whole-block write does not load it") {
  Fixture f(8 * kBs, 2, 2);
  auto first = Pattern(kBs, 2);
  size_t done;
  REQUIRE(f.vol->Write(0, first, &done).ok());
  CHECK(f.store->reads() == 0);  // whole block: no read-modify-write
  REQUIRE(f.vol->DropCache().ok());
  std::byte x[3] = {std::byte{1}, std::byte{2}, std::byte{3}};
  REQUIRE(f.vol->Write(10, x, &done).ok());
  CHECK(f.store->reads() == 1);  // partial: the block was loaded first
  std::vector<std::byte> back(kBs);
  REQUIRE(f.vol->Read(0, back, &done).ok());
  CHECK(back[9] == first[9]);
  CHECK(back[10] == std::byte{1});
  CHECK(back[13] == first[13]);
}

TEST_CASE("end of volume: short reads, short writes, then out of range") {
  Fixture f(4 * kBs, 2, 2);
  std::vector<std::byte> buf(kBs * 2, std::byte{7});
  size_t done = 99;
  REQUIRE(f.vol->Read(3 * kBs + 100, buf, &done).ok());
  CHECK(done == kBs - 100);
  REQUIRE(f.vol->Read(4 * kBs, buf, &done).ok());
  CHECK(done == 0);
  REQUIRE(f.vol->Write(3 * kBs + 12, buf, &done).ok());
  CHECK(done == kBs - 12);
  Status st = f.vol->Write(4 * kBs, buf, &done);
  CHECK(st.code() == Status::Code::kOutOfRange);
  CHECK(done == 0);
}

TEST_CASE("a cache smaller than the data evicts, writes dirty victims back, and loses nothing") {
  Fixture f(256 * kBs, 2, 2);  // 4 slots for 256 blocks
  auto data = Pattern(256 * kBs, 3);
  size_t done;
  for (uint64_t b = 0; b < 256; ++b)
    REQUIRE(f.vol->Write(b * kBs, std::span(data).subspan(b * kBs, kBs), &done).ok());
  VolumeStats s = f.vol->stats();
  CHECK(s.cache.evictions >= 252);
  CHECK(s.store_writes >= 252);  // evicted dirty blocks went to the store
  std::vector<std::byte> back(256 * kBs);
  REQUIRE(f.vol->Read(0, back, &done).ok());
  CHECK(back == data);
  CHECK(f.vol->stats().cache.misses > 0);
}

TEST_CASE("the fast path: hits never reach the engine; a sequential reader is read ahead of") {
  Fixture f(256 * kBs, 64, 8);
  f.vol->set_readahead_max(64 * kBs);
  const uint64_t store_reads = ReadThrough(f, 256, 128, 8);
  const CacheCounters c = f.vol->stats().cache;
  CHECK(c.readahead_blocks > 0);
  CHECK(c.readahead_hits > 0);
  CHECK(c.hits == c.readahead_hits);  // every hit was a block read ahead
  CHECK(store_reads <= 128 + 64);  // each block read from the store once
}

TEST_CASE("read-ahead is at most a quarter of the cache, whatever is asked for") {
  Fixture f(512 * kBs, 8, 4);  // 32 slots
  f.vol->set_readahead_max(1 << 20);
  CHECK(f.vol->readahead_max() == 8 * kBs);
  // A sequential reader through 16 times the cache: each block comes from
  // the store about once, not read ahead and evicted before it is read.
  CHECK(ReadThrough(f, 512, 512, 9) <= 512 + 8);
  CHECK(f.vol->stats().cache.readahead_hits > 0);
}

TEST_CASE("a failing store keeps dirty data and reports the error") {
  Fixture f(16 * kBs, 1, 1);  // one slot
  auto a = Pattern(kBs, 4), b = Pattern(kBs, 5);
  size_t done;
  REQUIRE(f.vol->Write(0, a, &done).ok());
  f.store->FailWrites(true);
  // Writing block 1 needs block 0's slot, whose data cannot be stored.
  CHECK_FALSE(f.vol->Write(kBs, b, &done).ok());
  CHECK_FALSE(f.vol->Flush().ok());
  CHECK(f.vol->stats().cache.dirty_blocks == 1);
  f.store->FailWrites(false);
  REQUIRE(f.vol->Flush().ok());
  auto contents = f.store->Contents();
  CHECK(std::memcmp(contents.data(), a.data(), kBs) == 0);
}

TEST_CASE("concurrent writers on disjoint ranges, then read back") {
  Fixture f(512 * kBs, 8, 4);
  auto data = Pattern(512 * kBs, 6);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      size_t done;
      for (uint64_t b = static_cast<uint64_t>(t); b < 512; b += 4)
        CHECK(f.vol->Write(b * kBs, std::span(data).subspan(b * kBs, kBs), &done).ok());
    });
  }
  for (auto& th : threads) th.join();
  REQUIRE(f.vol->Flush().ok());
  CHECK(f.store->Contents() == data);
}

TEST_CASE("stats count calls and bytes, and reset") {
  Fixture f(16 * kBs, 2, 2);
  std::vector<std::byte> buf(100);
  size_t done;
  REQUIRE(f.vol->Write(0, buf, &done).ok());
  REQUIRE(f.vol->Read(0, buf, &done).ok());
  REQUIRE(f.vol->Read(0, buf, &done).ok());
  VolumeStats s = f.vol->stats();
  CHECK(s.writes == 1);
  CHECK(s.reads == 2);
  CHECK(s.bytes_read == 200);
  CHECK(s.bytes_written == 100);
  CHECK(s.cache.hits >= 2);
  f.vol->ResetStats();
  s = f.vol->stats();
  CHECK(s.reads == 0);
  CHECK(s.cache.hits == 0);
  CHECK(s.cache.used_blocks == 1);  // occupancy is state, not a counter
}

TEST_CASE("write-through: every write is in the store when it returns, without a sync") {
  Fixture f(64 * kBs, 4, 2, /*write_through=*/true);
  auto data = Pattern(3000, 7);
  size_t done = 0;
  REQUIRE(f.vol->Write(700, data, &done).ok());
  CHECK(f.store->writes() == 7);
  CHECK(f.store->syncs() == 0);
  CHECK(f.vol->stats().cache.dirty_blocks == 0);
  auto all = f.store->Contents();
  CHECK(std::memcmp(all.data() + 700, data.data(), data.size()) == 0);
}
