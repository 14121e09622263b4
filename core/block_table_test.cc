#include "core/block_table.h"

#include <doctest/doctest.h>

#include <cstring>
#include <thread>
#include <vector>

using namespace vshare;

namespace {

BlockTable::Options Opts(bool root, uint32_t sets = 4, uint32_t ways = 2) {
  BlockTable::Options o;
  o.geometry.block_size = 512;
  o.geometry.sets = sets;
  o.geometry.ways = ways;
  o.volume_size = 512 * 1024;
  o.is_root = root;
  return o;
}

// Puts `block` in the table with `held` and bytes `fill`, as the engine would.
BlockTable::Slot* Put(BlockTable& t, uint64_t block, Perm held, uint8_t fill, int64_t expiry = INT64_MAX) {
  BlockTable::Locked set = t.Lock(block);
  BlockTable::Slot* s = t.ChooseVictim(set, [](uint64_t) { return false; });
  REQUIRE(s);
  t.Install(set, s, block);
  s->held = held;
  s->expiry_ns = expiry;
  s->valid = true;
  std::memset(s->data, fill, 512);
  return s;
}

}  // namespace

TEST_CASE("the fast path reads only what this node may read, and writes only under WRITE") {
  BlockTable t(Opts(false));
  std::vector<uint8_t> buf(512);
  CHECK_FALSE(t.ReadHit(3, 0, buf, 0));  // not here
  Put(t, 3, Perm::kRead, 'r', 1000);
  CHECK(t.ReadHit(3, 0, buf, 10));
  CHECK(buf[0] == 'r');
  CHECK_FALSE(t.ReadHit(3, 0, buf, 1000));  // the grant's TTL ran out
  CHECK_FALSE(t.WriteHit(3, 0, buf, 10));    // READ is not WRITE
  t.SetWindow(0, 5, 5);
  CHECK_FALSE(t.ReadHit(3, 0, buf, 10));  // the lease lapsed
  t.SetWindow(0, INT64_MAX, INT64_MAX);
  {
    BlockTable::Locked set = t.Lock(3);
    set.Find(3)->held = Perm::kWrite;
  }
  std::vector<uint8_t> w(100, 'w');
  CHECK(t.WriteHit(3, 10, w, 10));
  CHECK(t.DirtyCount() == 1);
  CHECK(t.DirtyBlocks() == std::vector<uint64_t>{3});
  CHECK(t.ReadHit(3, 0, buf, 10));
  CHECK(buf[9] == 'r');
  CHECK(buf[10] == 'w');
  // A child holding READ takes local WRITE away, a child's WRITE local READ too.
  {
    BlockTable::Locked set = t.Lock(3);
    set.Find(3)->holders = 1;
  }
  CHECK(t.ReadHit(3, 0, buf, 10));
  CHECK_FALSE(t.WriteHit(3, 0, w, 10));
  {
    BlockTable::Locked set = t.Lock(3);
    set.Find(3)->child_writes = true;
  }
  CHECK_FALSE(t.ReadHit(3, 0, buf, 10));
  // A new generation (a rejoin) voids every permission at once.
  {
    BlockTable::Locked set = t.Lock(3);
    set.Find(3)->holders = 0;
    set.Find(3)->child_writes = false;
  }
  CHECK(t.ReadHit(3, 0, buf, 10));
  t.NewGeneration();
  CHECK_FALSE(t.ReadHit(3, 0, buf, 10));
}

TEST_CASE("writes: a whole block needs no bytes first, part of one does; the root names each write anew") {
  BlockTable t(Opts(true));
  t.SetVersionEpoch(5);
  BlockTable::Slot* s = Put(t, 8, Perm::kWrite, 0);
  {
    BlockTable::Locked set = t.Lock(8);
    s->valid = false;
  }
  std::vector<uint8_t> part(10, 'p'), whole(512, 'x');
  CHECK_FALSE(t.WriteHit(8, 0, part, 0));
  CHECK(t.WriteHit(8, 0, whole, 0));
  uint64_t v1;
  {
    BlockTable::Locked set = t.Lock(8);
    v1 = s->version;
  }
  CHECK((v1 >> BlockTable::kVersionCounterBits) == 5);
  CHECK(t.WriteHit(8, 0, part, 0));
  BlockTable::Locked set = t.Lock(8);
  CHECK(s->version != v1);
  CHECK(s->writes == 2);
}

TEST_CASE("write marks: a slot that holds the block again, after being freed, never bears an old mark") {
  BlockTable t(Opts(true, 1, 1));  // one slot: every install reuses it
  Put(t, 8, Perm::kWrite, 0);
  std::vector<uint8_t> a(512, 'a'), b(512, 'b');
  BlockTable::WriteMark first;
  REQUIRE(t.WriteHit(8, 0, a, 0, &first));
  {
    BlockTable::Locked set = t.Lock(8);
    BlockTable::Slot* s = set.Find(8);
    CHECK(t.MarkOf(*s).slot == first.slot);
    CHECK(t.MarkOf(*s).writes == first.writes);
    set.MarkClean(s);
    t.Free(set, s);
  }
  Put(t, 8, Perm::kWrite, 0);  // the same block, in the same slot, written as often
  BlockTable::WriteMark again;
  REQUIRE(t.WriteHit(8, 0, b, 0, &again));
  CHECK(again.slot == first.slot);
  CHECK(again.writes != first.writes);  // the old bytes' mark does not match the new bytes
}

TEST_CASE("victims: empty first, then droppable by age; pinned and busy slots are never chosen") {
  BlockTable t(Opts(false, 1, 3));
  Put(t, 0, Perm::kRead, 0);
  Put(t, 1, Perm::kRead, 1);
  BlockTable::Slot* third = Put(t, 2, Perm::kRead, 2);
  std::vector<uint8_t> buf(512);
  CHECK(t.ReadHit(0, 0, buf, 0));  // 0 is now the most recent, 1 the oldest
  BlockTable::Locked set = t.LockSet(0);
  set.Find(1)->dirty = true;  // not droppable: costs a write-back
  CHECK(t.ChooseVictim(set, [](uint64_t) { return false; })->block == 2);
  CHECK(t.ChooseVictim(set, [](uint64_t b) { return b == 2; })->block == 0);
  third->busy = true;
  CHECK(t.ChooseVictim(set, [](uint64_t b) { return b == 0; })->block == 1);  // only the costly one is left
  CHECK(t.ChooseVictim(set, [](uint64_t b) { return b != 2; }) == nullptr);
}

TEST_CASE("the dirty index finds dirty blocks without a pass over clean sets, in block order") {
  BlockTable t(Opts(false, 64, 2));
  for (uint64_t b : {70, 3, 130}) {
    BlockTable::Slot* s = Put(t, b, Perm::kWrite, 1);
    BlockTable::Locked set = t.Lock(b);
    set.MarkDirty(s);
  }
  CHECK(t.DirtyBlocks() == std::vector<uint64_t>{3, 70, 130});
  {
    BlockTable::Locked set = t.Lock(70);
    set.MarkCleanIf(set.Find(70), 0);
    set.MarkCleanIf(set.Find(3 + 64 + 3), 0);  // (not there: nothing happens)
  }
  CHECK(t.DirtyBlocks() == std::vector<uint64_t>{3, 130});
  CHECK(t.counters().dirty_blocks == 2);
}

TEST_CASE("holder bits of retired children are swept a few sets at a time") {
  BlockTable t(Opts(false, 8, 1));
  for (uint64_t b = 0; b < 8; ++b) {
    BlockTable::Slot* s = Put(t, b, Perm::kRead, 0);
    BlockTable::Locked set = t.Lock(b);
    s->holders = 0b101;
  }
  CHECK_FALSE(t.SweepHolders(0b100, 5, true));
  CHECK(t.SweepHolders(0b100, 5, false));
  for (uint64_t b = 0; b < 8; ++b) {
    BlockTable::Locked set = t.Lock(b);
    CHECK(set.Find(b)->holders == 0b001);
  }
}

TEST_CASE("many threads hitting the fast path while the engine takes WRITE away never see a torn block") {
  BlockTable t(Opts(false, 1, 1));
  Put(t, 0, Perm::kWrite, 'a');
  std::atomic<bool> stop{false};
  std::atomic<int> torn{0};
  std::vector<std::thread> readers;
  for (int i = 0; i < 3; ++i)
    readers.emplace_back([&] {
      std::vector<uint8_t> buf(512);
      while (!stop)
        if (t.ReadHit(0, 0, buf, 0) && std::memcmp(buf.data(), buf.data() + 256, 256) != 0) ++torn;
    });
  std::vector<uint8_t> w(512);
  for (int i = 0; i < 2000; ++i) {
    std::memset(w.data(), 'a' + i % 26, 512);
    t.WriteHit(0, 0, w, 0);
    BlockTable::Locked set = t.Lock(0);  // the engine: a child now holds READ
    set.Find(0)->holders = i % 2;
  }
  stop = true;
  for (auto& r : readers) r.join();
  CHECK(torn == 0);
}

TEST_CASE("--kernel-cache rounds: a block is fenced only if no fast-path read came in between") {
  BlockTable t(Opts(false));
  t.SetWindow(0, INT64_MAX, INT64_MAX);
  Put(t, 3, Perm::kRead, 0x33);
  std::vector<uint8_t> buf(512);
  const uint32_t before = t.ReadCount(3);
  CHECK(t.ReadHit(3, 0, buf, 1));
  CHECK_FALSE(t.FenceIfUnread(3, before));  // a read was served during the "drop": another round
  CHECK(t.ReadHit(3, 0, buf, 1));          // still served: the old bytes are current until the answer
  const uint32_t quiet = t.ReadCount(3);
  CHECK(t.FenceIfUnread(3, quiet));
  CHECK_FALSE(t.ReadHit(3, 0, buf, 1));    // fenced: the fast path stays out
  CHECK_FALSE(t.WriteHit(3, 0, buf, 1));
  t.Unfence(3);
  CHECK(t.ReadHit(3, 0, buf, 1));
  CHECK(t.FenceIfUnread(7, 0));  // not here: nothing to fence, nothing served
}
