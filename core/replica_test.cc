// The primary source's Examples One to Four, run on the real protocol logic
// over the simulated network: the same message sequences, the volume ID
// remapped at node C, TTLs cut by the round trip, invalidations fanning out
// and their replies, and the data where it should be afterwards.
//
// The tree (Fig. 7): A is the root (volume ID 32002); B and C are its
// children, 1 s away each way; B passes A's volume ID on, C remaps it to
// 26924852; D is B's child, E and F are C's.
#include "core/replica.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>
#include <random>

#include "test/sim/sim_net.h"
#include "test/lin/linearizability.h"

using namespace vshare;
using namespace std::chrono_literals;
using Log = std::vector<std::string>;

// Show message logs one per line when a comparison fails.
namespace doctest {
template <>
struct StringMaker<Log> {
  static String convert(const Log& v) {
    std::string s = "\n";
    for (const std::string& x : v) s += "    " + x + "\n";
    return String(s.c_str());
  }
};
}  // namespace doctest

namespace {

constexpr uint32_t kBs = 4096;

ReplicaConfig Cfg(uint32_t volume_id, uint8_t self) {
  ReplicaConfig c;
  c.volume_name = "volume_X";
  c.volume_id = volume_id;
  c.volume_size = 64 * kBs;
  c.block_size = kBs;
  c.self[15] = self;
  return c;
}

std::vector<uint8_t> Fill(char c) { return std::vector<uint8_t>(kBs, static_cast<uint8_t>(c)); }

// The root's copy of a block: what its cache holds (the newest, written
// back to the store later), else what its store holds.
std::vector<uint8_t> StoreBlock(SimNet& net, uint64_t block, const std::string& root = "A") {
  if (auto cached = net.replica(root).CopyOf(block)) return cached->ToVector();
  auto all = net.store(root)->Contents();
  std::vector<uint8_t> out(kBs);
  std::memcpy(out.data(), all.data() + block * kBs, kBs);
  return out;
}

std::vector<uint8_t> CopyAt(SimNet& net, const std::string& node, uint64_t block) {
  auto copy = net.replica(node).CopyOf(block);
  return copy ? copy->ToVector() : std::vector<uint8_t>{};
}

// Fig. 7 with block 7 holding 'o' (old) at the root.
struct Fig7 {
  SimNet net;
  // How often the root made its store durable.
  uint64_t root_syncs() { return net.faults("A")->calls(FaultStore::Op::kSync); }
  Fig7() {
    ReplicaConfig root = Cfg(32002, 1);
    net.AddRoot("A", root);
    net.AddNode("B", Cfg(32002, 2), "A", 1000ms);
    net.AddNode("C", Cfg(26924852, 3), "A", 1000ms);
    net.AddNode("D", Cfg(1, 4), "B");
    net.AddNode("E", Cfg(1, 5), "C");
    net.AddNode("F", Cfg(1, 6), "C");
    std::vector<std::byte> old(kBs, std::byte{'o'});
    REQUIRE(net.store("A")->WriteBlock(7, old).ok());
  }
  // Local access at a node, run to completion; returns its status.
  Status Local(const std::string& node, uint64_t block, Perm want) {
    uint64_t op = net.Act(node, [&](Replica& r, Time now) { return r.StartLocal(block, want, now); });
    net.Run();
    REQUIRE(net.done(node).count(op));
    return net.done(node)[op];
  }
  // A local write at `offset` in the block (all of it by default), run to
  // completion.
  Status Write(const std::string& node, uint64_t block, std::vector<uint8_t> data, size_t offset = 0) {
    uint64_t op = net.Act(node, [&](Replica& r, Time now) { return r.WriteLocal(block, offset, std::move(data), now); });
    net.Run();
    REQUIRE(net.done(node).count(op));
    return net.done(node)[op];
  }
  // A local read, run to completion: the bytes it returned.
  std::vector<uint8_t> Read(const std::string& node, uint64_t block) {
    uint64_t op = net.Act(node, [&](Replica& r, Time now) { return r.ReadLocal(block, now); });
    net.Run();
    REQUIRE(net.done(node).count(op));
    REQUIRE(net.done(node)[op].ok());
    return net.reads(node)[op];
  }
  // Local reads of blocks [first, first + n) started together (so they
  // go up as one range), run to completion: their operation ids.
  std::vector<uint64_t> ReadTogether(const std::string& node, uint64_t first, uint64_t n) {
    std::vector<uint64_t> ops;
    net.Act(node, [&](Replica& r, Time now) {
      for (uint64_t b = first; b < first + n; ++b) ops.push_back(r.ReadLocal(b, now));
      return 0;
    });
    net.Run();
    return ops;
  }
  // Whole-block writes of blocks [first, first + n) started together, the
  // bytes of block b all `fill` + (b - first) (or all `fill`, if `same`),
  // run to completion: their operation ids.
  std::vector<uint64_t> WriteTogether(const std::string& node, uint64_t first, uint64_t n, char fill, bool same = false) {
    std::vector<uint64_t> ops;
    net.Act(node, [&](Replica& r, Time now) {
      for (uint64_t b = first; b < first + n; ++b)
        ops.push_back(r.WriteLocal(b, 0, Fill(static_cast<char>(same ? fill : fill + (b - first))), now));
      return 0;
    });
    net.Run();
    return ops;
  }
  void Join(const std::string& node) {
    net.Act(node, [](Replica& r, Time now) { r.Start(now); return 0; });
    net.Run();
    REQUIRE(net.replica(node).connected());
  }
  // Examples One and Two, as the starting point of Three and Four.
  void ExamplesOneAndTwo() {
    Join("E");
    REQUIRE(Local("E", 7, Perm::kRead).ok());
    net.Advance(48000ms);
    Join("F");
    REQUIRE(Local("F", 7, Perm::kRead).ok());
    net.TakeLog();
  }
};

}  // namespace

TEST_CASE("Example One: a read through a proxy that connects upward and remaps the volume ID") {
  Fig7 t;
  t.Join("E");
  t.net.Advance(0ms);
  CHECK(t.Local("E", 7, Perm::kRead).ok());
  CHECK(t.net.TakeLog() == Log{
      "E->C CONNECT name=volume_X",
      "C->A CONNECT name=volume_X",                         // C lacks volume_X
      "A->C OK_REPLY name=volume_X vol=32002 hb_ttl=30000",
      "C->E OK_REPLY name=volume_X vol=26924852 hb_ttl=28000",  // C's own ID; C's lease, less the round trip
      "E->C IO_REQUEST/GET vol=26924852 block=7 perm=READ",
      "C->A IO_REQUEST/GET vol=32002 block=7 perm=READ",     // mapped back
      "A->C OK_REPLY vol=32002 block=7 perm=READ ttl=1200000 hb_ttl=30000 data",
      "C->E OK_REPLY vol=26924852 block=7 perm=READ ttl=1198000 hb_ttl=28000 data",  // less the 2 s round trip
  });
  CHECK(CopyAt(t.net, "C", 7) == Fill('o'));  // C kept a copy
  CHECK(CopyAt(t.net, "E", 7) == Fill('o'));
  const BlockState at_a = t.net.replica("A").StateOf(7);
  CHECK(at_a.HolderCount() == 1);  // A granted C (only) a READ copy
  CHECK(t.net.replica("A").GrantOf(7, 2) == Perm::kRead);  // C is A's link 2
}

TEST_CASE("a read of a block being read ahead waits for that fetch: one request up, the read gets the bytes") {
  Fig7 t;
  t.Join("E");
  t.net.TakeLog();
  const uint64_t op = t.net.Act("E", [](Replica& r, Time now) {
    r.PrefetchLocal(7, now);
    return r.ReadLocal(7, now);
  });
  t.net.Run();
  REQUIRE(t.net.done("E").count(op));
  CHECK(t.net.done("E")[op].ok());
  CHECK(t.net.reads("E")[op] == Fill('o'));
  CHECK(t.net.TakeLog() == Log{
      "E->C IO_REQUEST/GET vol=26924852 block=7 perm=READ",
      "C->A IO_REQUEST/GET vol=32002 block=7 perm=READ",
      "A->C OK_REPLY vol=32002 block=7 perm=READ ttl=1200000 hb_ttl=30000 data",
      "C->E OK_REPLY vol=26924852 block=7 perm=READ ttl=1198000 hb_ttl=28000 data",
  });
  // A read whose caller gave up is not reported; the fetched copy stays.
  const uint64_t gone = t.net.Act("E", [](Replica& r, Time now) {
    r.PrefetchLocal(8, now);
    const uint64_t id = r.ReadLocal(8, now);
    r.CancelLocal(id, now);
    return id;
  });
  t.net.Run();
  CHECK(t.net.done("E").count(gone) == 0);
  CHECK(CopyAt(t.net, "E", 8) == std::vector<uint8_t>(kBs, 0));
  CHECK(t.net.replica("E").HeldAt(8, t.net.now()) == Perm::kRead);
}

TEST_CASE("Example Two: the proxy serves the second child from its copy, with the TTL it has left") {
  Fig7 t;
  t.Join("E");
  REQUIRE(t.Local("E", 7, Perm::kRead).ok());
  t.net.TakeLog();
  t.net.Advance(48000ms);  // F asks 50 s after C asked A
  t.Join("F");
  CHECK(t.Local("F", 7, Perm::kRead).ok());
  CHECK(t.net.TakeLog() == Log{
      "F->C CONNECT name=volume_X",
      "C->F OK_REPLY name=volume_X vol=26924852 hb_ttl=25000",  // C knows volume_X now; its lease
                                                                // (renewed by HEARTBEATs meanwhile) has 25 s left
      "F->C IO_REQUEST/GET vol=26924852 block=7 perm=READ",
      "C->F OK_REPLY vol=26924852 block=7 perm=READ ttl=1150000 hb_ttl=25000 data",  // nothing went to A
  });
  CHECK(CopyAt(t.net, "F", 7) == Fill('o'));
}

TEST_CASE("Example Three: a synchronous write invalidates every copy down every branch first") {
  Fig7 t;
  t.ExamplesOneAndTwo();
  t.Join("B");
  t.net.TakeLog();
  uint64_t op = t.net.Act("B", [](Replica& r, Time now) { return r.PutLocal(7, Fill('x'), now); });
  t.net.Run();
  CHECK(t.net.done("B")[op].ok());
  CHECK(t.net.TakeLog() == Log{
      "B->A IO_REQUEST/PUT vol=32002 block=7 perm=WRITE data",
      "A->C INVALIDATE vol=32002 block=7 perm=NONE",            // A gave C a copy
      "C->E INVALIDATE vol=26924852 block=7 perm=NONE",         // C gave E and F copies
      "C->F INVALIDATE vol=26924852 block=7 perm=NONE",
      "E->C OK_REPLY",
      "F->C OK_REPLY",
      "C->A OK_REPLY vol=32002 block=7",                        // C names what it answers for
      "A->B OK_REPLY vol=32002 block=7 ttl=1200000 hb_ttl=30000",
  });
  CHECK(StoreBlock(t.net, 7) == Fill('x'));
  for (const char* n : {"C", "E", "F"}) {
    CAPTURE(n);
    CHECK(t.net.replica(n).copies() == 0);  // no stale copy anywhere
    CHECK(t.net.replica(n).StateOf(7).held == Perm::kNone);
  }
  // The root updated its copy only after the invalidations: E now reads 'x'.
  CHECK(t.Local("E", 7, Perm::kRead).ok());
  CHECK(CopyAt(t.net, "E", 7) == Fill('x'));
}

TEST_CASE("Example Four: an asynchronous write through a proxy, flushed later with a FLUSH that gives WRITE back") {
  Fig7 t;
  t.ExamplesOneAndTwo();
  t.Join("B");
  REQUIRE(t.net.Act("B", [](Replica& r, Time now) { return r.PutLocal(7, Fill('x'), now); }) > 0);
  t.net.Run();
  REQUIRE(t.Local("E", 7, Perm::kRead).ok());  // C and E hold READ copies again
  t.Join("D");
  t.net.TakeLog();

  // D updates part of its copy of the block, as in the source: it needs
  // the bytes, so it asks with GET.
  CHECK(t.Write("D", 7, std::vector<uint8_t>(100, 'w'), 8).ok());
  CHECK(t.net.TakeLog() == Log{
      "D->B IO_REQUEST/GET vol=32002 block=7 perm=WRITE",        // B passes A's volume ID on
      "B->A IO_REQUEST/GET vol=32002 block=7 perm=WRITE",
      "A->C INVALIDATE vol=32002 block=7 perm=NONE",
      "C->E INVALIDATE vol=26924852 block=7 perm=NONE",
      "E->C OK_REPLY",
      "C->A OK_REPLY vol=32002 block=7",
      "A->B OK_REPLY vol=32002 block=7 perm=WRITE ttl=1200000 hb_ttl=30000 data",
      // B counts its grant from when it asked. The source shows 1198 s (its
      // 2 s round trip); here A also spent 2 s recalling C's copy before it
      // granted, so B, which cannot know when A's clock started, gives D
      // 1200 - 4 s: never more than A has left.
      "B->D OK_REPLY vol=32002 block=7 perm=WRITE ttl=1196000 hb_ttl=27500 data",  // a HEARTBEAT renewed B meanwhile
  });
  // D holds WRITE now: its next write is local, nothing goes on the wire.
  CHECK(t.Write("D", 7, Fill('y')).ok());
  CHECK(t.net.TakeLog().empty());
  CHECK(StoreBlock(t.net, 7) == Fill('x'));

  t.net.Advance(60000ms);  // time passes; D's sync daemon runs
  uint64_t op = t.net.Act("D", [](Replica& r, Time now) { return r.FlushLocal(7, Perm::kNone, now); });
  t.net.Run();
  CHECK(t.net.done("D")[op].ok());
  CHECK(t.net.TakeLog() == Log{
      "D->B IO_REQUEST/FLUSH vol=32002 block=7 perm=NONE data",   // D gives up its permission
      "B->A IO_REQUEST/FLUSH vol=32002 block=7 perm=READ data",   // B keeps a copy for reading
      "A->B OK_REPLY",
      "B->D OK_REPLY",
  });
  CHECK(StoreBlock(t.net, 7) == Fill('y'));
  CHECK(CopyAt(t.net, "B", 7) == Fill('y'));
  CHECK(t.net.replica("B").StateOf(7).held == Perm::kRead);
  CHECK(t.net.replica("D").StateOf(7).held == Perm::kNone);
  CHECK(t.net.replica("D").copies() == 0);
  // And everyone else reads 'y'.
  CHECK(t.Local("F", 7, Perm::kRead).ok());
  CHECK(CopyAt(t.net, "F", 7) == Fill('y'));
}

TEST_CASE("a whole-block write takes WRITE with a LOCK: the old bytes are not fetched") {
  Fig7 t;
  t.ExamplesOneAndTwo();  // C, E and F hold READ copies of block 7
  t.Join("D");
  t.net.TakeLog();
  CHECK(t.Write("D", 7, Fill('w')).ok());
  CHECK(t.net.TakeLog() == Log{
      "D->B IO_REQUEST/LOCK vol=32002 block=7 perm=WRITE",
      "B->A IO_REQUEST/LOCK vol=32002 block=7 perm=WRITE",
      "A->C INVALIDATE vol=32002 block=7 perm=NONE",
      "C->E INVALIDATE vol=26924852 block=7 perm=NONE",
      "C->F INVALIDATE vol=26924852 block=7 perm=NONE",
      "E->C OK_REPLY",
      "F->C OK_REPLY",
      "C->A OK_REPLY vol=32002 block=7",
      "A->B OK_REPLY vol=32002 block=7 perm=WRITE ttl=1200000 hb_ttl=30000",  // no DATA either way
      "B->D OK_REPLY vol=32002 block=7 perm=WRITE ttl=1196000 hb_ttl=26000",
  });
  CHECK(t.Read("E", 7) == Fill('w'));  // and the bytes come back up when someone reads
}

TEST_CASE("a recall that reaches dirty data brings it up before anyone reads") {
  Fig7 t;
  t.Join("D");
  REQUIRE(t.Write("D", 7, Fill('d')).ok());  // dirty at D only
  t.Join("E");
  t.net.TakeLog();
  CHECK(t.Local("E", 7, Perm::kRead).ok());
  CHECK(t.net.TakeLog() == Log{
      "E->C IO_REQUEST/GET vol=26924852 block=7 perm=READ",
      "C->A IO_REQUEST/GET vol=32002 block=7 perm=READ",
      "A->B INVALIDATE vol=32002 block=7 perm=READ",        // a reader only needs the writer downgraded
      "B->D INVALIDATE vol=32002 block=7 perm=READ",
      "D->B OK_REPLY data",                                  // the dirty block comes up with the reply
      "B->A OK_REPLY vol=32002 block=7 data",
      "A->C OK_REPLY vol=32002 block=7 perm=READ ttl=1200000 hb_ttl=30000 data",
      // A spent 2 s recalling B's copy before it granted: 1200 - 4 s left.
      "C->E OK_REPLY vol=26924852 block=7 perm=READ ttl=1196000 hb_ttl=26000 data",
  });
  CHECK(CopyAt(t.net, "E", 7) == Fill('d'));
  CHECK(StoreBlock(t.net, 7) == Fill('d'));
  CHECK(t.net.replica("D").StateOf(7).held == Perm::kRead);  // kept a clean copy
  CHECK_FALSE(t.net.replica("D").IsDirty(7));
}

TEST_CASE("a copy whose TTL ran out is fetched again, never served") {
  Fig7 t;
  t.Join("E");
  REQUIRE(t.Local("E", 7, Perm::kRead).ok());
  t.net.TakeLog();
  REQUIRE(t.Local("E", 7, Perm::kRead).ok());
  CHECK(t.net.TakeLog().empty());  // within its TTL: local
  t.net.Advance(1198000ms);       // E's grant (1198 s) has lapsed
  REQUIRE(t.Local("E", 7, Perm::kRead).ok());
  Log log = t.net.TakeLog();
  REQUIRE(log.size() >= 2);
  // Both ask with the version of the copy they kept; A says it is current,
  // and so does C: no bytes travel.
  CHECK(log == Log{
      "E->C IO_REQUEST/GET vol=26924852 block=7 perm=READ version",
      "C->A IO_REQUEST/GET vol=32002 block=7 perm=READ version",  // C's lapsed too
      "A->C OK_REPLY vol=32002 block=7 perm=READ ttl=1200000 hb_ttl=30000",
      "C->E OK_REPLY vol=26924852 block=7 perm=READ ttl=1198000 hb_ttl=28000",
  });
  CHECK(t.net.replica("E").stats(t.net.now()).revalidated == 1);
  CHECK(t.net.replica("C").stats(t.net.now()).revalidated == 1);
  CHECK(t.Read("E", 7) == Fill('o'));
}

TEST_CASE("versions: a copy kept through a move is revalidated, and sent again only when it changed") {
  Fig7 t;
  t.Join("D");
  t.Join("E");
  t.Join("F");
  REQUIRE(t.Read("E", 7) == Fill('o'));
  REQUIRE(t.Read("E", 9) == std::vector<uint8_t>(kBs, 0));
  t.net.Kill("C");  // E's parent
  // D writes block 9 once C's grants are gone; block 7 stays as it was.
  uint64_t w = t.net.Act("D", [](Replica& r, Time now) { return r.WriteLocal(9, 0, Fill('d'), now); });
  uint64_t flush = t.net.Act("D", [](Replica& r, Time now) { return r.SyncLocal(now); });
  t.net.Advance(70000ms);
  REQUIRE(t.net.done("D")[w].ok());
  REQUIRE(t.net.done("D")[flush].ok());
  t.net.MoveTo("E", "A");
  t.net.Advance(500ms);
  REQUIRE(t.net.replica("E").connected());
  t.net.TakeLog();
  CHECK(t.Read("E", 7) == Fill('o'));
  CHECK(t.net.TakeLog() == Log{
      "E->A IO_REQUEST/GET vol=32002 block=7 perm=READ version",
      "A->E OK_REPLY vol=32002 block=7 perm=READ ttl=1200000 hb_ttl=30000",  // no data: unchanged
  });
  CHECK(t.Read("E", 9) == Fill('d'));
  Log log = t.net.TakeLog();
  REQUIRE(log.size() >= 2);
  CHECK(log.front() == "E->A IO_REQUEST/GET vol=32002 block=9 perm=READ version");
  CHECK(log.back().find(" data") != std::string::npos);  // changed: the bytes come
  CHECK(t.net.replica("E").stats(t.net.now()).revalidated == 1);
}

TEST_CASE("versions: a root's versions never match another root's, nor its own before a takeover") {
  SimNet net;
  ReplicaConfig ca = Cfg(32002, 1), cs = Cfg(5, 9);
  ca.version_epoch = 7;
  cs.version_epoch = 7;  // the same epoch even: a takeover moves on from it
  net.AddRoot("A", ca);
  Replica& s = net.AddRoot("S", cs);
  s.SetAuthority(Time{}, net.now());
  net.AddNode("L", Cfg(1, 4), "A");
  net.Act("L", [](Replica& r, Time now) { r.Start(now); return 0; });
  net.Run();
  uint64_t r = net.Act("L", [](Replica& rep, Time now) { return rep.ReadLocal(3, now); });
  net.Run();
  REQUIRE(net.done("L")[r].ok());
  net.Kill("A");
  net.Act("S", [](Replica& rep, Time now) { rep.TakeOver(now); return 0; });
  net.MoveTo("L", "S");
  net.Advance(34000ms);  // the grace
  net.TakeLog();
  r = net.Act("L", [](Replica& rep, Time now) { return rep.ReadLocal(3, now); });
  net.Run();
  REQUIRE(net.done("L")[r].ok());
  Log log = net.TakeLog();
  REQUIRE(log.size() == 2);
  CHECK(log[0] == "L->S IO_REQUEST/GET vol=5 block=3 perm=READ version");
  CHECK(log[1].find(" data") != std::string::npos);  // S cannot vouch for A's version
  CHECK(net.replica("L").stats(net.now()).revalidated == 0);
}

TEST_CASE("a request that comes back to its originator, or runs out of hops, gets LOOP_DETECTED") {
  SimNet net;
  net.AddRoot("A", Cfg(32002, 1));
  ReplicaConfig c = Cfg(5, 3);
  net.AddNode("C", c, "A");
  net.Act("C", [](Replica& r, Time now) { r.Start(now); return 0; });
  net.Run();
  Replica& cr = net.replica("C");
  Message get;
  get.opcode = Opcode::kIoRequest;
  get.io_op = IoOp::kGet;
  get.volume_id = 5;
  get.block_num = 1;
  get.hops_left = 4;
  get.originator = c.self;  // C's own request, back at C
  get.xid = 99;
  cr.OnChildMessage(1, get, net.now());
  auto out = cr.TakeEffects().messages;
  REQUIRE(out.size() == 1);
  CHECK(out[0].msg.opcode == Opcode::kErrReply);
  CHECK(*out[0].msg.status == WireStatus::kLoopDetected);
  CHECK(out[0].msg.xid == 99);

  get.originator[15] = 200;  // someone else's, but with no hops left to forward
  get.hops_left = 0;
  cr.OnChildMessage(1, get, net.now());
  out = cr.TakeEffects().messages;
  REQUIRE(out.size() == 1);
  CHECK(*out[0].msg.status == WireStatus::kLoopDetected);
}

TEST_CASE("requests are refused with the right status") {
  SimNet net;
  Replica& a = net.AddRoot("A", Cfg(32002, 1));
  auto status_of = [&](const Message& m) {
    a.OnChildMessage(1, m, net.now());
    auto out = a.TakeEffects().messages;
    REQUIRE(out.size() == 1);
    return out[0].msg.status;
  };
  Message connect;
  connect.opcode = Opcode::kConnect;
  connect.volume_name = "other";
  CHECK(status_of(connect) == WireStatus::kNoSuchVolume);
  Message get;
  get.opcode = Opcode::kIoRequest;
  get.io_op = IoOp::kGet;
  get.volume_id = 999;
  get.block_num = 1;
  CHECK(status_of(get) == WireStatus::kNoSuchVolume);
  get.volume_id = 32002;
  get.block_num = 64;  // one past the end
  CHECK(status_of(get) == WireStatus::kOutOfRange);
  get.block_num.reset();
  CHECK(status_of(get) == WireStatus::kBadParamValue);
  Message put = get;
  put.block_num = 3;
  put.io_op = IoOp::kPut;
  put.data = std::vector<uint8_t>(100);  // not a block
  CHECK(status_of(put) == WireStatus::kBadParamLength);
}

namespace {

// The coherence invariant over every node's usable permission on `block`
// (TTL applied; the root's store is the backing copy and not counted): the
// WRITE holders form one chain from the top down (a node's permission covers
// what it granted below), and every other usable copy lies below the deepest
// of them. That node may have shared READ copies downward, but cannot write
// again before Step() has recalled them; a copy anywhere else would be a
// second, independent writer's victim.
void CheckCoherent(SimNet& net, const std::map<std::string, std::string>& parent_of, uint64_t block) {
  std::vector<std::string> writers;
  int readers = 0;
  for (const auto& [n, parent] : parent_of) {
    Perm p = net.replica(n).HeldAt(block, net.now());
    if (p == Perm::kWrite) writers.push_back(n);
    if (p == Perm::kRead) ++readers;
  }
  CAPTURE(block);
  (void)readers;
  if (writers.empty()) return;
  // Exactly one writer has no writer child, and every other writer is its ancestor.
  int deepest = 0;
  for (const std::string& w : writers) {
    bool has_writer_child = false;
    for (const std::string& x : writers) has_writer_child |= parent_of.at(x) == w;
    if (!has_writer_child) {
      ++deepest;
      size_t on_chain = 1;
      for (std::string up = parent_of.at(w); parent_of.count(up); up = parent_of.at(up))
        on_chain += std::count(writers.begin(), writers.end(), up);
      CHECK(on_chain == writers.size());
    }
  }
  CHECK(deepest == 1);
  for (const auto& [n, parent] : parent_of) {
    if (net.replica(n).HeldAt(block, net.now()) != Perm::kRead) continue;
    bool below_writer = false;
    for (std::string up = parent; !below_writer && parent_of.count(up); up = parent_of.at(up))
      below_writer = std::count(writers.begin(), writers.end(), up) > 0;
    CAPTURE(n);
    CHECK(below_writer);
  }
}

}  // namespace

TEST_CASE("random reads, writes and flushes anywhere in the tree: every read sees the latest write") {
  const std::map<std::string, std::string> parent_of = {{"B", "A"}, {"C", "A"}, {"D", "B"}, {"E", "C"}, {"F", "C"}};
  const std::vector<std::string> actors = {"B", "C", "D", "E", "F"};
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    CAPTURE(seed);
    Fig7 t;
    for (const char* n : {"B", "C", "D", "E", "F"}) t.Join(n);
    std::mt19937 rng(seed);
    std::map<uint64_t, uint8_t> latest;  // what a read must return
    latest[0] = 0;
    latest[3] = 0;
    latest[7] = 'o';
    const std::vector<uint64_t> blocks = {0, 3, 7};
    for (int step = 0; step < 150; ++step) {
      const std::string& who = actors[rng() % actors.size()];
      const uint64_t block = blocks[rng() % blocks.size()];
      const int kind = static_cast<int>(rng() % 10);
      t.net.Advance(std::chrono::milliseconds(rng() % 5000));
      if (kind < 5) {  // read
        std::vector<uint8_t> got = t.Read(who, block);
        REQUIRE(got.size() == kBs);
        CHECK(got[0] == latest[block]);
      } else if (kind < 8) {  // write in place (asynchronous: stays dirty here)
        uint8_t v = static_cast<uint8_t>('a' + rng() % 26);
        REQUIRE(t.Write(who, block, std::vector<uint8_t>(kBs, v)).ok());
        latest[block] = v;
      } else if (kind == 8) {  // write through
        uint8_t v = static_cast<uint8_t>('A' + rng() % 26);
        uint64_t op = t.net.Act(who, [&](Replica& r, Time now) { return r.PutLocal(block, std::vector<uint8_t>(kBs, v), now); });
        t.net.Run();
        REQUIRE(t.net.done(who)[op].ok());
        latest[block] = v;
      } else if (t.net.replica(who).StateOf(block).held == Perm::kWrite) {  // flush
        // A flush pushes this node's own copy. When a child holds WRITE below
        // it with newer data, that data moves up only when recalled or
        // flushed itself, so the store can be checked only in the other case.
        // (A proxy may hold WRITE without the bytes: its child's whole-block
        // write took WRITE without fetching them.)
        const std::vector<uint8_t> mine = CopyAt(t.net, who, block);
        const bool mine_is_latest = !mine.empty() && mine[0] == latest[block];
        uint64_t op = t.net.Act(who, [&](Replica& r, Time now) { return r.FlushLocal(block, Perm::kRead, now); });
        t.net.Run();
        REQUIRE(t.net.done(who)[op].ok());
        if (mine_is_latest) CHECK(StoreBlock(t.net, block)[0] == latest[block]);
      }
      for (uint64_t b : blocks) CheckCoherent(t.net, parent_of, b);
    }
    // Everything written can be read back at the root after reads recall it.
    for (uint64_t b : blocks) {
      REQUIRE(t.Local("E", b, Perm::kRead).ok());
      CHECK(CopyAt(t.net, "E", b)[0] == latest[b]);
    }
  }
}

TEST_CASE("concurrent reads and writes from every node form linearizable histories") {
  // Operations on several nodes overlap in simulated time. The histories
  // (invoke and complete times, values) go to the linearizability checker.
  // (This test found a local write whose data was applied after the engine
  // had already granted a queued reader the old copy; local reads and
  // writes now move their data inside the grant.)
  const std::vector<std::string> actors = {"B", "C", "D", "E", "F"};
  size_t histories = 0, ops_checked = 0;
  for (uint32_t seed = 1; seed <= 60; ++seed) {
    CAPTURE(seed);
    Fig7 t;
    for (const char* n : {"B", "C", "D", "E", "F"}) t.Join(n);
    std::mt19937 rng(seed);
    struct Pending {
      std::string node;
      uint64_t block;
      bool is_write;
      std::string value;
      double invoke;
    };
    std::map<std::pair<std::string, uint64_t>, Pending> pending;  // (node, op id)
    std::optional<Pending> starting;  // the op being started: it may complete at once
    std::map<uint64_t, std::vector<lin::Op>> history;
    auto secs = [&] { return std::chrono::duration<double>(t.net.now().time_since_epoch()).count(); };
    t.net.on_done = [&](const std::string& node, const LocalDone& d) {
      Pending p;
      auto it = pending.find({node, d.op});
      if (it == pending.end() && !starting) return;  // a sync's completion
      if (it != pending.end()) {
        p = it->second;
        pending.erase(it);
      } else {
        REQUIRE(starting.has_value());
        REQUIRE(starting->node == node);
        p = *starting;
        starting.reset();
      }
      REQUIRE(d.status.ok());
      lin::Op op{static_cast<int>(node[0]), p.is_write, p.value, p.invoke, secs()};
      if (!p.is_write) {
        const std::vector<uint8_t> bytes = d.data.ToVector();
        REQUIRE(bytes.size() == kBs);
        const char* text = reinterpret_cast<const char*>(bytes.data());
        op.value = std::string(text, strnlen(text, kBs));  // up to the first NUL, within the block
      }
      history[p.block].push_back(op);
    };
    int next_value = 1;
    std::vector<std::pair<std::string, uint64_t>> syncs;
    for (int round = 0; round < 12; ++round) {
      // Start 2 to 5 operations at once on random nodes, then let them race.
      int n = 2 + static_cast<int>(rng() % 4);
      for (int k = 0; k < n; ++k) {
        const std::string& who = actors[rng() % actors.size()];
        uint64_t block = rng() % 2 ? 7 : 9;
        if (rng() % 5 == 0) {  // a sync barrier in the mix: it must not change any value
          uint64_t op = t.net.Act(who, [&](Replica& r, Time now) { return r.SyncLocal(now); });
          syncs.push_back({who, op});
          t.net.Run(rng() % 6);
          continue;
        }
        bool is_write = rng() % 2;
        std::string value = is_write ? "v" + std::to_string(next_value++) : "";
        starting = Pending{who, block, is_write, value, secs()};
        std::vector<uint8_t> bytes(kBs, 0);
        std::copy(value.begin(), value.end(), bytes.begin());
        uint64_t op = t.net.Act(who, [&](Replica& r, Time now) {
          return is_write ? r.WriteLocal(block, 0, bytes, now) : r.ReadLocal(block, now);
        });
        if (starting) pending[{who, op}] = *starting;  // still running
        starting.reset();
        t.net.Advance(std::chrono::milliseconds(rng() % 700));
        t.net.Run(rng() % 6);  // deliver a few messages: overlap the next start with this one
      }
      t.net.Run();
      REQUIRE(pending.empty());
      t.net.Advance(std::chrono::milliseconds(rng() % 3000));
    }
    for (const auto& [node, op] : syncs) {
      CAPTURE(node);
      REQUIRE(t.net.done(node).count(op));
      CHECK(t.net.done(node)[op].ok());  // a sync never fails in a healthy tree
    }
    // Initial contents: block 7 holds 'o' * 4096, block 9 zeros.
    for (auto& [block, ops] : history) {
      std::string initial = block == 7 ? std::string(kBs, 'o') : std::string();
      lin::Verdict v = lin::CheckRegister(ops, initial);
      CAPTURE(block);
      CHECK_MESSAGE(v.linearizable, v.why);
      ++histories;
      ops_checked += ops.size();
    }
  }
  CHECK(histories >= 100);
  CHECK(ops_checked >= 1500);
}

TEST_CASE("under faults, with fast-path hits and sync writes, histories stay linearizable") {
  // t_linearizable_faults in simulation: a root R, a proxy below it, leaves
  // A and B below the proxy, and four workers (one on R, two on A, one on
  // B) reading and writing two fresh blocks per history. Reads and writes
  // try the table first, as Volume does; a write then waits for its block
  // to be durable at the root, as --write-mode sync does. In most
  // histories the proxy is killed (a new one takes its place) or stopped
  // past its lease; the leaves then move to the root, as a real node does
  // when it gives up on its parent, and are moved back below the proxy
  // before the next history.
  constexpr int kHistories = 24, kOpsPerWorker = 12;
  const std::vector<std::string> workers = {"R", "A", "A", "B"};
  size_t checked = 0, violations = 0, fault_violations = 0, failed_ops = 0;
  for (uint32_t seed = 1; seed <= 8; ++seed) {
    CAPTURE(seed);
    std::mt19937 rng(seed);
    SimNet net;
    ReplicaConfig root = Cfg(1, 1);
    root.volume_size = 256 * kBs;
    root.hb_ttl_ms = 2000;
    net.AddRoot("R", root);
    auto leaf_cfg = [](uint8_t self) {
      ReplicaConfig c = Cfg(1, self);
      c.connect_flags = connect_flags::kSyncWrite;
      return c;
    };
    int proxies = 0;
    std::string proxy;
    auto new_proxy = [&] {
      proxy = "P" + std::to_string(++proxies);
      net.AddNode(proxy, Cfg(1, static_cast<uint8_t>(10 + proxies)), "R", 1ms);
      net.Act(proxy, [](Replica& r, Time now) { r.Start(now); return 0; });
      net.Advance(50ms);
      REQUIRE(net.replica(proxy).connected());
    };
    new_proxy();
    net.AddNode("A", leaf_cfg(3), proxy, 1ms);
    net.AddNode("B", leaf_cfg(4), proxy, 1ms);
    for (const char* n : {"A", "B"}) net.Act(n, [](Replica& r, Time now) { r.Start(now); return 0; });
    net.Advance(50ms);

    // Event times: simulated seconds, plus a sequence number that orders
    // what happens at the same simulated instant in the order it happened.
    uint64_t seq = 0;
    auto stamp = [&] { return std::chrono::duration<double>(net.now().time_since_epoch()).count() + 1e-9 * ++seq; };
    auto value_of = [](std::span<const uint8_t> b) {
      const char* text = reinterpret_cast<const char*>(b.data());
      return std::string(text, strnlen(text, b.size()));
    };
    struct Worker {
      int left = 0;
      enum class Stage { kIdle, kRead, kWrite, kNeedFlush, kFlush } stage = Stage::kIdle;
      uint64_t op = 0, block = 0;
      lin::Op rec;
    };
    std::vector<Worker> w(workers.size());
    std::map<uint64_t, std::vector<lin::Op>> history;
    auto finish = [&](Worker& k, bool ok) {
      if (ok) k.rec.complete = stamp();
      else ++failed_ops;
      if (ok || k.rec.is_write) history[k.block].push_back(k.rec);  // a failed write may have taken effect
      k.stage = Worker::Stage::kIdle;
    };
    // The worker whose operation is being started: it may complete at once,
    // before its id is known.
    int starting = -1;
    net.on_done = [&](const std::string& node, const LocalDone& d) {
      for (size_t i = 0; i < w.size(); ++i) {
        Worker& k = w[i];
        const bool now = starting == static_cast<int>(i) && k.op == 0;
        if (workers[i] != node || (k.op != d.op && !now) || k.stage == Worker::Stage::kIdle) continue;
        if (now) starting = -1;
        k.op = 0;
        if (k.stage == Worker::Stage::kRead) {
          if (d.status.ok()) k.rec.value = value_of(d.data.span());
          finish(k, d.status.ok());
        } else if (k.stage == Worker::Stage::kWrite && d.status.ok()) {
          k.stage = Worker::Stage::kNeedFlush;  // applied here; durable next
        } else {
          if (!d.status.ok()) MESSAGE("failed: ", d.status.ToString());
          finish(k, d.status.ok());
        }
        return;
      }
    };
    auto track = [&](size_t i, const std::function<uint64_t(Replica&, Time)>& f) {
      w[i].op = 0;
      starting = static_cast<int>(i);
      const uint64_t op = net.Act(workers[i], f);
      if (starting == static_cast<int>(i)) {  // still running
        starting = -1;
        w[i].op = op;
      }
    };
    auto start_op = [&](size_t i, uint64_t first) {
      Worker& k = w[i];
      const std::string& node = workers[i];
      Replica& r = net.replica(node);
      k.block = first + rng() % 2;
      k.rec = lin::Op{static_cast<int>(i + 1), rng() % 2 == 0, "", 0, lin::kPending};
      k.rec.invoke = stamp();
      --k.left;
      const int64_t now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(net.now().time_since_epoch()).count();
      if (!k.rec.is_write) {
        std::vector<uint8_t> buf(kBs);
        if (r.table() && r.table()->ReadHit(k.block, 0, buf, now_ns)) {
          k.rec.value = value_of(buf);
          finish(k, true);
        } else {
          k.stage = Worker::Stage::kRead;
          track(i, [&](Replica& rr, Time now) { return rr.ReadLocal(k.block, now); });
        }
        // Volume's read-ahead asks for what follows.
        if (rng() % 2) net.Act(node, [&](Replica& rr, Time now) { rr.PrefetchLocal(first + 1, now); return 0; });
        return;
      }
      k.rec.value = "v" + std::to_string(seed) + "." + std::to_string(seq);
      std::vector<uint8_t> bytes(kBs, 0);
      std::copy(k.rec.value.begin(), k.rec.value.end(), bytes.begin());
      if (r.table() && r.table()->WriteHit(k.block, 0, bytes, now_ns)) {
        k.stage = Worker::Stage::kNeedFlush;
      } else {
        k.stage = Worker::Stage::kWrite;
        track(i, [&](Replica& rr, Time now) { return rr.WriteLocal(k.block, 0, bytes, now); });
      }
    };
    auto flush = [&](size_t i) {
      Worker& k = w[i];
      k.stage = Worker::Stage::kFlush;
      track(i, [&](Replica& r, Time now) { return r.FlushLocal(k.block, Perm::kWrite, now, true); });
    };

    for (int h = 0; h < kHistories; ++h) {
      CAPTURE(h);
      for (const char* n : {"A", "B"})  // back below the proxy
        if (net.parent_of(n) != proxy) net.MoveTo(n, proxy);
      net.Advance(20ms);
      const uint64_t first = 2 * static_cast<uint64_t>(h);
      for (Worker& k : w) k.left = kOpsPerWorker;
      const int fault = h % 3;  // 0: kill the proxy; 1: stop it past its lease; 2: none
      const Time fault_at = net.now() + std::chrono::milliseconds(rng() % 60);
      bool faulted = false;
      Time resume_at = Time::max();
      std::string stopped;
      for (int step = 0; step < 200000; ++step) {
        bool busy = false;
        for (size_t i = 0; i < w.size(); ++i) {
          Worker& k = w[i];
          if (k.stage == Worker::Stage::kNeedFlush) flush(i);
          if (k.stage == Worker::Stage::kIdle && k.left > 0 && rng() % 3 == 0) start_op(i, first);
          busy |= k.stage != Worker::Stage::kIdle || k.left > 0;
        }
        if (!stopped.empty() && net.now() >= resume_at) {
          net.SetDown(stopped, false);
          stopped.clear();
        }
        if (!busy && net.now() >= resume_at) break;
        if (!busy && faulted && fault == 2) break;
        if (!faulted && net.now() >= fault_at) {
          faulted = true;
          if (fault == 0) {
            net.Kill(proxy);
            for (const char* n : {"A", "B"}) net.MoveTo(n, "R");  // the dead parent refuses; its parent takes them
            new_proxy();
          } else if (fault == 1) {
            stopped = proxy;
            net.SetDown(proxy, true);
            resume_at = net.now() + 2500ms;
          }
          if (fault != 1) resume_at = net.now();
        }
        for (const char* n : {"A", "B"})  // a leaf that gave up on its stopped parent goes to the root
          if (net.TakeParentDropped(n) && net.parent_of(n) != "R") net.MoveTo(n, "R");
        net.Advance(std::chrono::milliseconds(rng() % 3));
      }
      for (const Worker& k : w) REQUIRE(k.stage == Worker::Stage::kIdle);
      net.Advance(std::chrono::milliseconds(100 + rng() % 400));
    }
    for (auto& [block, ops] : history) {
      lin::Verdict v = lin::CheckRegister(ops, "");
      CAPTURE(block);
      checked += ops.size();
      if (v.linearizable) continue;
      if ((block / 2) % 3 == 2) {  // a quiet history
        ++violations;
        CHECK_MESSAGE(v.linearizable, v.why);
      } else {
        ++fault_violations;
        MESSAGE("known gap, a history with a fault: block ", block, ": ", v.why);
      }
    }
  }
  // Known gap (doc/failover.md): a recall to NONE (another node writes)
  // takes a sync writer's bytes before its FLUSH has made them durable; the
  // proxy is lost before it has written them through to the root, and the
  // writer's sync barrier at its new parent succeeds without them. Seeds 1
  // to 8 show 1 such history among 64 with faults (seed 6, block 2). (A
  // recall to READ no longer does: the writer claims the bytes back from
  // its copy. Without that, 2; and 6 when a durable flush of a recalled
  // block completes without a sync barrier.)
  CHECK(fault_violations <= 1);
  CHECK(violations == 0);
  CHECK(failed_ops == 0);
  CHECK(checked >= 8 * kHistories * 4 * kOpsPerWorker * 9 / 10);
}

TEST_CASE("a sync barrier carries data a recall left in a proxy all the way to a synced root") {
  Fig7 t;
  t.Join("E");
  t.Join("F");
  REQUIRE(t.Write("E", 7, Fill('e')).ok());  // dirty at E, holding WRITE
  REQUIRE(t.Read("F", 7) == Fill('e'));       // C recalls E to READ: now dirty at C
  CHECK(t.net.replica("C").IsDirty(7));
  CHECK_FALSE(t.net.replica("E").IsDirty(7));
  CHECK(StoreBlock(t.net, 7) == Fill('o'));   // nothing reached the root
  t.net.TakeLog();
  // E's fsync: nothing dirty at E itself, but the barrier makes C flush.
  uint64_t op = t.net.Act("E", [](Replica& r, Time now) { return r.SyncLocal(now); });
  t.net.Run();
  REQUIRE(t.net.done("E").count(op));
  CHECK(t.net.done("E")[op].ok());
  CHECK(t.net.TakeLog() == Log{
      "E->C IO_REQUEST/FLUSH vol=26924852",                      // the barrier: no block
      "C->A IO_REQUEST/FLUSH vol=32002 block=7 perm=WRITE data",  // C's dirty block first, keeping WRITE
      "A->C OK_REPLY",
      "C->A IO_REQUEST/FLUSH vol=32002",                         // then the barrier goes up
      "A->C OK_REPLY",
      "C->E OK_REPLY",
  });
  CHECK(StoreBlock(t.net, 7) == Fill('e'));
  CHECK(t.root_syncs() == 1);  // and the root synced before anyone answered
  CHECK_FALSE(t.net.replica("C").IsDirty(7));
}

TEST_CASE("a sync barrier fails when the root cannot make its store durable") {
  Fig7 t;
  t.Join("E");
  REQUIRE(t.Write("E", 7, Fill('e')).ok());
  t.net.faults("A")->Fail(FaultStore::Op::kSync, Status::IOError("disk on fire"));
  uint64_t op = t.net.Act("E", [](Replica& r, Time now) { return r.SyncLocal(now); });
  t.net.Run();
  REQUIRE(t.net.done("E").count(op));
  CHECK(t.net.done("E")[op].code() == Status::Code::kIOError);  // fsync must not claim success
  CHECK(t.root_syncs() == 1);
}

TEST_CASE("a join that comes back round a cycle of parents is refused with LOOP_DETECTED") {
  // B has no volume yet and is asked by child link 1 on behalf of X.
  ReplicaConfig cfg = Cfg(7, 2);
  Replica b(cfg);
  Message connect;
  connect.opcode = Opcode::kConnect;
  connect.volume_name = "volume_X";
  connect.hops_left = 5;
  connect.originator[15] = 99;  // X
  connect.xid = 1;
  b.OnChildMessage(1, connect, Time{});
  auto out = b.TakeEffects().messages;
  REQUIRE(out.size() == 1);
  CHECK(out[0].to_parent);
  CHECK(out[0].msg.opcode == Opcode::kConnect);
  CHECK(out[0].msg.originator[15] == 99);  // on X's behalf
  CHECK(out[0].msg.hops_left == 4);        // one hop spent

  // B's own join, arriving back at B through the cycle.
  Replica b2(cfg);
  connect.originator = cfg.self;
  b2.OnChildMessage(1, connect, Time{});
  out = b2.TakeEffects().messages;
  REQUIRE(out.size() == 1);
  CHECK(*out[0].msg.status == WireStatus::kLoopDetected);

  // Out of hops: refused rather than passed on.
  Replica b3(cfg);
  connect.originator[15] = 99;
  connect.hops_left = 0;
  b3.OnChildMessage(1, connect, Time{});
  out = b3.TakeEffects().messages;
  REQUIRE(out.size() == 1);
  CHECK(*out[0].msg.status == WireStatus::kLoopDetected);

  // And the failure reaches whoever started the join.
  Replica c(Cfg(8, 3));
  c.Start(Time{});
  out = c.TakeEffects().messages;
  REQUIRE(out.size() == 1);
  Message refused;
  refused.opcode = Opcode::kErrReply;
  refused.status = WireStatus::kLoopDetected;
  c.OnReply(out[0].call_id, Status::Ok(), refused, Time{});
  CHECK_FALSE(c.connected());
  CHECK_FALSE(c.connecting());
  CHECK(c.connect_error().find("LOOP_DETECTED") != std::string::npos);
}

TEST_CASE("a flush sends the block as it is when it runs, not as it was when it was asked for") {
  Fig7 t;
  t.Join("E");
  t.Join("F");
  t.Join("B");
  t.Join("D");
  REQUIRE(t.Write("E", 7, Fill('a')).ok());
  REQUIRE(t.Read("F", 7) == Fill('a'));  // C recalls E: 'a' is dirty at C, E and F hold READ
  REQUIRE(t.net.replica("C").IsDirty(7));
  // At C, at the same instant: a local write (which must first invalidate
  // E's and F's copies, so it waits) and then a sync barrier, whose flush of
  // block 7 queues behind the write.
  uint64_t write = t.net.Act("C", [](Replica& r, Time now) { return r.WriteLocal(7, 0, Fill('c'), now); });
  uint64_t sync = t.net.Act("C", [](Replica& r, Time now) { return r.SyncLocal(now); });
  t.net.Run();
  REQUIRE(t.net.done("C")[write].ok());
  REQUIRE(t.net.done("C")[sync].ok());
  CHECK(StoreBlock(t.net, 7) == Fill('c'));  // the flush carried the write, not the older 'a'
  CHECK(t.Read("D", 7) == Fill('c'));        // and nobody reads 'a' again
}

TEST_CASE("a sync barrier whose block flush is refused ends with that error; one lost in transport is sent again") {
  // D's parent is driven by hand here, so its FLUSH can fail.
  ReplicaConfig cfg = Cfg(5, 4);
  Replica d(cfg);
  d.Start(Time{});
  auto out = d.TakeEffects().messages;
  REQUIRE(out.size() == 1);
  Message joined;
  joined.opcode = Opcode::kOkReply;
  joined.volume_id = 32002;
  joined.volume_size = 64 * kBs;
  joined.block_size = kBs;
  joined.hb_ttl_ms = 30000;
  d.OnReply(out[0].call_id, Status::Ok(), joined, Time{});
  REQUIRE(d.connected());
  d.TakeEffects();
  // A write: D asks for WRITE, and the parent grants it with the block.
  uint64_t w = d.WriteLocal(3, 0, Fill('w'), Time{});
  out = d.TakeEffects().messages;
  REQUIRE(out.size() == 1);
  Message grant;
  grant.opcode = Opcode::kOkReply;
  grant.permissions = WirePerm::kWrite;
  grant.ttl_ms = 60000;
  grant.data = Fill('o');
  d.OnReply(out[0].call_id, Status::Ok(), grant, Time{});
  Effects e = d.TakeEffects();
  REQUIRE(e.done.size() == 1);
  REQUIRE(e.done[0].op == w);
  REQUIRE(d.IsDirty(3));
  // The barrier's flush of block 3 fails in transport.
  uint64_t s = d.SyncLocal(Time{});
  out = d.TakeEffects().messages;
  REQUIRE(out.size() == 1);
  CHECK(*out[0].msg.io_op == IoOp::kFlush);
  // Lost with the link: not an error yet; it goes again 200 ms later.
  d.OnReply(out[0].call_id, Status::IOError("connection to the parent is closed"), {}, Time{});
  CHECK(d.TakeEffects().done.empty());
  d.Tick(Time{} + std::chrono::milliseconds(250));
  out = d.TakeEffects().messages;
  // (A HEARTBEAT may be due too.)
  std::erase_if(out, [](const Outgoing& o) { return o.msg.opcode == Opcode::kHeartbeat; });
  REQUIRE(out.size() == 1);
  CHECK(*out[0].msg.io_op == IoOp::kFlush);
  Message refused;
  refused.opcode = Opcode::kErrReply;
  refused.status = WireStatus::kBusy;
  d.OnReply(out[0].call_id, Status::Ok(), refused, Time{} + std::chrono::milliseconds(260));
  e = d.TakeEffects();
  REQUIRE(e.done.size() == 1);
  CHECK(e.done[0].op == s);
  CHECK(e.done[0].status.code() == Status::Code::kIOError);  // fsync reports it
  CHECK(e.messages.empty());                                  // and sends no barrier up
  CHECK(d.IsDirty(3));                                        // the data is still here
}

namespace {

// Runs one local operation at `node` to completion; returns its status.
Status RunOp(Fig7& t, const std::string& node, const std::function<uint64_t(Replica&, Time)>& f) {
  uint64_t op = t.net.Act(node, f);
  t.net.Run();
  REQUIRE(t.net.done(node).count(op));
  return t.net.done(node)[op];
}

Status Lease(Fig7& t, const std::string& node, bool shared, bool take = true) {
  return RunOp(t, node, [&](Replica& r, Time now) {
    return take ? r.AcquireLeaseLocal(shared, now) : r.ReleaseLeaseLocal(shared, now);
  });
}

}  // namespace

TEST_CASE("the writer lease: one exclusive holder in the tree, shared ones together, given back on close") {
  Fig7 t;
  for (const char* n : {"D", "E", "F"}) t.Join(n);
  t.net.TakeLog();

  REQUIRE(Lease(t, "E", false).ok());
  CHECK(t.net.TakeLog() == Log{
      "E->C IO_REQUEST/LOCK vol=26924852 perm=WRITE",  // no BLOCK_NUM: the volume-wide lease
      "C->A IO_REQUEST/LOCK vol=32002 perm=WRITE",
      "A->C OK_REPLY vol=32002 perm=WRITE",
      "C->E OK_REPLY vol=26924852 perm=WRITE",
  });
  CHECK(t.net.replica("E").lease() == Perm::kWrite);
  // A sibling is refused by the proxy they share, without asking the root.
  CHECK(Lease(t, "F", false).code() == Status::Code::kBusy);
  CHECK(t.net.TakeLog() == Log{"F->C IO_REQUEST/LOCK vol=26924852 perm=WRITE", "C->F ERR_REPLY status=BUSY"});
  // A node on the other branch is refused by the root; shared is no better.
  CHECK(Lease(t, "D", false).code() == Status::Code::kBusy);
  CHECK(Lease(t, "D", true).code() == Status::Code::kBusy);
  CHECK(Lease(t, "A", false).code() == Status::Code::kBusy);  // nor the root's own opens
  CHECK(t.net.replica("D").lease() == Perm::kNone);

  // A second open on the holder's own host shares its lease; the lease goes
  // back only when the last one closes, all the way up.
  REQUIRE(Lease(t, "E", false).ok());
  REQUIRE(Lease(t, "E", false, /*take=*/false).ok());
  t.net.TakeLog();
  CHECK(t.net.replica("E").lease() == Perm::kWrite);
  REQUIRE(Lease(t, "E", false, false).ok());
  CHECK(t.net.TakeLog() == Log{
      "E->C IO_REQUEST/LOCK vol=26924852 perm=NONE",
      "C->A IO_REQUEST/LOCK vol=32002 perm=NONE",
      "A->C OK_REPLY vol=32002 perm=NONE",
      "C->E OK_REPLY vol=26924852 perm=NONE",
  });
  REQUIRE(Lease(t, "D", false).ok());  // now the other branch may
  REQUIRE(Lease(t, "D", false, false).ok());

  // Shared writers (--shared-writers everywhere) coexist, across branches
  // and at the root; an exclusive request among them is refused.
  REQUIRE(Lease(t, "D", true).ok());
  REQUIRE(Lease(t, "E", true).ok());
  REQUIRE(Lease(t, "F", true).ok());
  REQUIRE(Lease(t, "A", true).ok());
  CHECK(Lease(t, "F", false).code() == Status::Code::kBusy);  // F's upgrade: E shares C
  CHECK(t.net.replica("F").lease() == Perm::kRead);         // and F keeps its shared lease
  for (const char* n : {"D", "E", "F", "A"}) REQUIRE(Lease(t, n, true, false).ok());

  // A child whose link goes gives its lease back with it, once its global
  // lease has lapsed: until then it may still be writing.
  REQUIRE(Lease(t, "F", false).ok());
  t.net.SetDown("F", true);
  t.net.Act("C", [](Replica& r, Time now) { r.OnChildGone(2, now); return 0; });  // F is C's link 2
  t.net.Run();
  CHECK(Lease(t, "D", false).code() == Status::Code::kBusy);
  t.net.Advance(64000ms);  // the 30 s lease, its 3 s margin and the 30 s grace
  CHECK(Lease(t, "D", false).ok());
}

TEST_CASE("semi-sync: FORWARD puts the bytes in the parent only; dropping the block passes them further up") {
  Fig7 t;
  t.Join("E");
  t.Join("F");
  REQUIRE(t.Write("E", 7, Fill('e')).ok());
  t.net.TakeLog();
  REQUIRE(RunOp(t, "E", [](Replica& r, Time now) { return r.ForwardLocal(7, now); }).ok());
  CHECK(t.net.TakeLog() == Log{"E->C FORWARD vol=26924852 block=7 data", "C->E OK_REPLY"});
  CHECK(CopyAt(t.net, "C", 7) == Fill('e'));  // the parent holds the bytes...
  CHECK(t.net.replica("C").IsDirty(7));
  CHECK(StoreBlock(t.net, 7) == Fill('o'));   // ...and they went no further
  CHECK_FALSE(t.net.replica("E").IsDirty(7));  // E keeps WRITE, clean
  CHECK(t.net.replica("E").HeldAt(7, t.net.now()) == Perm::kWrite);

  // E writes again and forwards again: the same, a second time.
  REQUIRE(t.Write("E", 7, Fill('f')).ok());
  REQUIRE(RunOp(t, "E", [](Replica& r, Time now) { return r.ForwardLocal(7, now); }).ok());
  CHECK(CopyAt(t.net, "C", 7) == Fill('f'));
  t.net.TakeLog();

  // E gives everything back: the block C alone has goes a level up first.
  REQUIRE(RunOp(t, "E", [](Replica& r, Time now) { return r.DropAllLocal(now); }).ok());
  CHECK(t.net.TakeLog() == Log{
      "E->C FORWARD vol=26924852 block=7",  // no DATA: pass yours up
      "C->A IO_REQUEST/FLUSH vol=32002 block=7 perm=WRITE data",
      "A->C OK_REPLY",
      "C->E OK_REPLY",
      "E->C IO_REQUEST/LOCK vol=26924852 block=7 perm=NONE",
      "C->E OK_REPLY",
  });
  CHECK(StoreBlock(t.net, 7) == Fill('f'));
  CHECK_FALSE(t.net.replica("E").CopyOf(7).has_value());
  CHECK(t.net.replica("C").GrantOf(7, 1) == Perm::kNone);  // E, C's link 1, gave it back
  CHECK(t.Read("F", 7) == Fill('f'));
}

namespace {

// Node G, below `parent`, joined with SYNC_WRITE in its CONNECT_FLAGS.
void AddSyncWriter(Fig7& t, const std::string& parent) {
  ReplicaConfig cfg = Cfg(1, 7);
  cfg.connect_flags = connect_flags::kSyncWrite;
  t.net.AddNode("G", cfg, parent);
}

}  // namespace

TEST_CASE("a dirty block is dropped with a FLUSH that keeps nothing; a child that asked for SYNC_WRITE is synced at the root") {
  Fig7 t;
  AddSyncWriter(t, "B");
  t.Join("D");
  t.Join("G");
  REQUIRE(t.Write("D", 7, Fill('d')).ok());
  t.net.TakeLog();
  REQUIRE(RunOp(t, "D", [](Replica& r, Time now) { return r.DropAllLocal(now); }).ok());
  CHECK(t.net.TakeLog() == Log{
      "D->B IO_REQUEST/FLUSH vol=32002 block=7 perm=NONE data",
      "B->A IO_REQUEST/FLUSH vol=32002 block=7 perm=READ data",
      "A->B OK_REPLY",
      "B->D OK_REPLY",
  });
  CHECK(StoreBlock(t.net, 7) == Fill('d'));
  CHECK(t.root_syncs() == 0);  // an async child's flush is not synced

  // G joined with SYNC_WRITE: B marks its requests FORCE_SYNC on the way up,
  // and the root syncs before answering.
  REQUIRE(t.Write("G", 8, Fill('g')).ok());
  REQUIRE(RunOp(t, "G", [](Replica& r, Time now) { return r.ForwardLocal(8, now); }).ok());
  CHECK(StoreBlock(t.net, 8) == Fill('g'));
  CHECK(t.root_syncs() == 1);
}

TEST_CASE("a sync child's bytes that a recall to NONE took reach the root, durably, before anyone else gets the block") {
  Fig7 t;
  AddSyncWriter(t, "B");
  t.Join("D");
  t.Join("G");
  REQUIRE(t.Write("G", 9, Fill('g')).ok());  // dirty in G alone: its FLUSH has not gone yet
  const uint64_t syncs = t.root_syncs();
  t.net.TakeLog();
  // D's write recalls G's WRITE to NONE; G's bytes come back to B with the
  // answer. Should B die after granting D, no one would claim them back:
  // they go to the root first, synced, and only then is D granted.
  REQUIRE(t.Write("D", 9, Fill('d')).ok());
  const Log log = t.net.TakeLog();
  const auto at = [&](const std::string& prefix) {
    return std::find_if(log.begin(), log.end(), [&](const std::string& l) { return l.rfind(prefix, 0) == 0; }) -
           log.begin();
  };
  const auto through = at("B->A IO_REQUEST/FLUSH vol=32002 block=9 perm=WRITE data");
  REQUIRE(through < static_cast<long>(log.size()));
  CHECK(at("G->B OK_REPLY data") < through);
  CHECK(through < at("B->D OK_REPLY vol=32002 block=9 perm=WRITE"));
  CHECK(at("B->D OK_REPLY") < static_cast<long>(log.size()));
  CHECK(StoreBlock(t.net, 9) == Fill('g'));
  CHECK(t.root_syncs() == syncs + 1);
  CHECK(t.net.replica("B").stats(t.net.now()).sync_write_throughs == 1);
  CHECK(t.Read("D", 9) == Fill('d'));
  // An async child's recalled bytes stay with B, as before: D's, now, to G.
  REQUIRE(t.Write("G", 9, Fill('h')).ok());
  CHECK(StoreBlock(t.net, 9) == Fill('g'));
  CHECK(t.net.replica("B").stats(t.net.now()).sync_write_throughs == 1);
}

TEST_CASE("the writer lease: a child that leaves while its request is upstream does not keep it") {
  Fig7 t;
  for (const char* n : {"D", "E"}) t.Join(n);
  t.net.TakeLog();
  t.net.Act("E", [](Replica& r, Time now) { return r.AcquireLeaseLocal(false, now); });
  t.net.Run(2);  // E->C and C->A delivered; A's answer is on its way
  t.net.SetDown("E", true);
  t.net.Act("C", [](Replica& r, Time now) { r.OnChildGone(1, now); return 0; });  // E is C's link 1
  t.net.Run();
  Log log = t.net.TakeLog();
  CHECK(std::find(log.begin(), log.end(), "C->A IO_REQUEST/LOCK vol=32002 perm=NONE") != log.end());
  CHECK(Lease(t, "D", false).ok());
}

// ---- Leases and failures (issue 4) ----

TEST_CASE("leases: a node stopped past its lease blocks a write elsewhere until the lease is over, then reads the new bytes") {
  Fig7 t;
  t.Join("E");
  t.Join("F");
  REQUIRE(t.Read("E", 7) == Fill('o'));
  const ReplicaStats before = t.net.replica("E").stats(t.net.now());
  REQUIRE(before.valid);
  const Time stopped = t.net.now();
  t.net.SetDown("E", true);  // SIGSTOP, holding a READ copy
  Time written{};
  t.net.on_done = [&](const std::string& node, const LocalDone&) {
    if (node == "F") written = t.net.now();
  };
  uint64_t w = t.net.Act("F", [](Replica& r, Time now) { return r.WriteLocal(7, 0, Fill('f'), now); });
  t.net.Advance(70000ms);  // E's lease, the margin and the grace period
  REQUIRE(t.net.done("F").count(w));
  CHECK(t.net.done("F")[w].ok());
  // C could not recall E's copy; it waited until E could no longer use it.
  CHECK(written >= stopped + std::chrono::milliseconds(before.ms_left));
  CHECK(t.net.replica("C").stats(t.net.now()).failed_children == 1);
  t.net.SetDown("E", false);  // SIGCONT: C closed its link, so E joins again
  t.net.Advance(2000ms);
  CHECK(t.net.replica("E").stats(t.net.now()).rejoins == 1);
  CHECK(t.Read("E", 7) == Fill('f'));
}

TEST_CASE("leases: past its lease a node asks before using its cache; renewed in time, nothing is fetched again") {
  Fig7 t;
  t.Join("E");
  REQUIRE(t.Read("E", 7) == Fill('o'));
  const int64_t left = t.net.replica("E").stats(t.net.now()).ms_left;
  t.net.SetDown("E", true);
  t.net.Advance(std::chrono::milliseconds(left + 500));  // lapsed, but within C's margin
  t.net.SetDown("E", false);
  CHECK_FALSE(t.net.replica("E").stats(t.net.now()).valid);
  t.net.TakeLog();
  uint64_t r = t.net.Act("E", [](Replica& rep, Time now) { return rep.ReadLocal(7, now); });
  CHECK_FALSE(t.net.done("E").count(r));  // not from the cache, not yet
  t.net.Advance(1000ms);                  // a HEARTBEAT renews the lease
  REQUIRE(t.net.done("E").count(r));
  CHECK(t.net.reads("E")[r] == Fill('o'));
  CHECK(t.net.TakeLog().empty());  // no GET: the copy was still good
  CHECK(t.net.replica("E").stats(t.net.now()).rejoins == 0);
}

namespace {

// `writer` writes block 7 while `reader` reads it once a second for 70 s.
// Whether the reader ever returned the old bytes ('o') after the write had
// completed, and when that was.
struct WriteSeen {
  Status status;
  Time written{};
  bool stale = false;
};

WriteSeen WriteWhileReading(Fig7& t, const std::string& writer, const std::string& reader, char fill) {
  auto seen = std::make_shared<WriteSeen>();
  t.net.on_done = [&t, seen, writer, reader](const std::string& node, const LocalDone& d) {
    if (node == writer && seen->written == Time{}) seen->written = t.net.now();
    if (node == reader && seen->written != Time{} && d.data == Fill('o')) seen->stale = true;
  };
  uint64_t w = t.net.Act(writer, [fill](Replica& r, Time now) { return r.WriteLocal(7, 0, Fill(fill), now); });
  for (int i = 0; i < 70; ++i) {
    t.net.Act(reader, [](Replica& r, Time now) { return r.ReadLocal(7, now); });
    t.net.Advance(1000ms);
  }
  REQUIRE(t.net.done(writer).count(w));
  seen->status = t.net.done(writer)[w];
  return *seen;
}

}  // namespace

TEST_CASE("leases: a stopped proxy's children stop using their copies; after it comes back everyone reads the new bytes") {
  Fig7 t;
  t.Join("D");
  t.Join("E");
  REQUIRE(t.Read("E", 7) == Fill('o'));  // copies at C and E
  t.net.SetDown("C", true);
  // E keeps reading while C is stopped: from its cache until its lease
  // (cut to C's) lapses, then not at all.
  WriteSeen seen = WriteWhileReading(t, "D", "E", 'd');
  CHECK(seen.status.ok());
  CHECK_FALSE(seen.stale);
  t.net.SetDown("C", false);
  t.net.Advance(5000ms);  // C joins A again; E joins C again
  CHECK(t.net.replica("C").stats(t.net.now()).rejoins == 1);
  CHECK(t.Read("E", 7) == Fill('d'));
}

TEST_CASE("leases: a killed proxy's grants stand until its lease is over, because its children may still read") {
  Fig7 t;
  t.Join("D");
  t.Join("E");
  REQUIRE(t.Read("E", 7) == Fill('o'));  // copies at C and E
  const Time killed = t.net.now();
  const int64_t c_left = t.net.replica("C").stats(killed).ms_left;
  t.net.Kill("C");  // A sees C's link close at once
  WriteSeen seen = WriteWhileReading(t, "D", "E", 'd');  // E still has its copy
  CHECK(seen.status.ok());
  CHECK(seen.written >= killed + std::chrono::milliseconds(c_left));  // not before C's lease (and so E's) lapsed
  CHECK_FALSE(seen.stale);
}

TEST_CASE("reparenting: a leaf whose proxy dies joins the root and claims back what it wrote with RECOVER") {
  Fig7 t;
  t.Join("D");
  t.Join("E");
  REQUIRE(t.Write("E", 7, Fill('e')).ok());  // async: dirty at E only
  REQUIRE(t.Write("E", 8, Fill('s')).ok());  // semi-sync: E's bytes also at C
  REQUIRE(RunOp(t, "E", [](Replica& r, Time now) { return r.ForwardLocal(8, now); }).ok());
  REQUIRE(t.net.replica("C").IsDirty(8));
  t.net.Kill("C");       // with E's block 8, and its grants on 7 and 8
  t.net.MoveTo("E", "A");  // E's grandparent
  t.net.TakeLog();
  t.net.Advance(500ms);
  CHECK(t.net.TakeLog() == Log{
      "E->A CONNECT name=volume_X",
      "A->E OK_REPLY name=volume_X vol=32002 hb_ttl=30000",
      // Both claims in one range, both taken in one answer.
      "E->A IO_REQUEST/RECOVER vol=32002 block=7 count=2 perm=WRITE data",
      "A->E OK_REPLY vol=32002 block=7 count=2 perm=WRITE ttl=1200000 hb_ttl=30000",
  });
  CHECK(StoreBlock(t.net, 7) == Fill('e'));  // at the root now (its store is the root's copy)
  CHECK(StoreBlock(t.net, 8) == Fill('s'));
  CHECK(t.net.replica("E").HeldAt(7, t.net.now()) == Perm::kWrite);
  CHECK(t.net.replica("E").stats(t.net.now()).rejoins == 1);
  // Writes after the move go on from there; D reads them once C's lease
  // and grace period are over (until then C's grants keep D waiting).
  REQUIRE(t.Write("E", 7, Fill('f')).ok());
  uint64_t r = t.net.Act("D", [](Replica& rep, Time now) { return rep.ReadLocal(7, now); });
  t.net.Advance(70000ms);
  REQUIRE(t.net.done("D").count(r));
  CHECK(t.net.reads("D")[r] == Fill('f'));
}

TEST_CASE("reparenting: writes claimed back after someone else wrote the block are superseded, not applied") {
  Fig7 t;
  t.Join("D");
  t.Join("E");
  REQUIRE(t.Write("E", 7, Fill('e')).ok());
  t.net.Kill("C");
  t.net.Advance(70000ms);  // C's lease, margin and grace are over: its grants go
  REQUIRE(t.Write("D", 7, Fill('d')).ok());
  t.net.MoveTo("E", "A");
  // D (through B) holds WRITE: A cannot tell E's claim from B's failure yet,
  // so E asks until its claim's time is up, then drops it.
  t.net.Advance(70000ms);
  CHECK(t.Read("E", 7) == Fill('d'));  // E's older write did not overwrite D's
  CHECK(t.Read("D", 7) == Fill('d'));
}

TEST_CASE("reparenting: a claim that arrives before the lost proxy is found failed waits, and is not overtaken") {
  Fig7 t;
  t.Join("E");
  REQUIRE(t.Write("E", 7, Fill('e')).ok());  // async: only E has it
  t.net.SetDown("C", true);                  // C stops, holding WRITE for E
  uint64_t r = t.net.Act("A", [](Replica& rep, Time now) { return rep.ReadLocal(7, now); });
  t.net.Advance(3000ms);                     // A's recall of C is still waiting
  t.net.MoveTo("E", "A");                    // E has given C up and claims block 7
  t.net.Advance(70000ms);
  REQUIRE(t.net.done("A").count(r));
  CHECK(t.net.reads("A")[r] == Fill('e'));   // the acknowledged write was not lost
  CHECK(t.Read("E", 7) == Fill('e'));
}

// ---- Failure handling: regressions from the review ----

namespace {

// Runs the network in 100 ms steps until `node` has completed `op`, for at
// most `limit`. Whether it has.
bool AdvanceUntilDone(Fig7& t, const std::string& node, uint64_t op, std::chrono::milliseconds limit) {
  for (auto waited = 0ms; !t.net.done(node).count(op) && waited < limit; waited += 100ms) t.net.Advance(100ms);
  return t.net.done(node).count(op) > 0;
}

}  // namespace

TEST_CASE("reparenting: a claim taken while the proxy serves a recall from above is recalled too, leaving one writer") {
  // G, a level below E, holds WRITE on block 7 through E and C. E stops and
  // C finds it failed. D, on the other branch, writes block 7: A recalls C,
  // and C waits out E's lease and grace period before it answers. Meanwhile
  // G gives E up, joins C and claims block 7 back with RECOVER; C takes the
  // claim (its writer, E, has failed). The recall must take G's new grant
  // too: otherwise C answers A, D gets WRITE, and G writes on beside it.
  Fig7 t;
  t.net.AddNode("G", Cfg(1, 7), "E");
  t.Join("D");
  t.Join("G");
  REQUIRE(t.Write("G", 7, Fill('g')).ok());  // dirty at G only
  t.net.Advance(20000ms);
  t.net.SetDown("E", true);
  for (int i = 0; i < 600 && t.net.replica("C").stats(t.net.now()).failed_children == 0; ++i) t.net.Advance(100ms);
  REQUIRE(t.net.replica("C").stats(t.net.now()).failed_children == 1);
  t.net.Advance(5000ms);
  uint64_t w = t.net.Act("D", [](Replica& r, Time now) { return r.WriteLocal(7, 0, Fill('d'), now); });
  t.net.Advance(3000ms);    // D->B->A, A->C INVALIDATE: C's recall waits for E
  REQUIRE_FALSE(t.net.done("D").count(w));
  t.net.MoveTo("G", "C");  // E's parent, the next on G's PARENT_LIST
  t.net.Advance(1000ms);
  CHECK(t.net.replica("C").stats(t.net.now()).claims_served == 1);
  REQUIRE(AdvanceUntilDone(t, "D", w, 90000ms));
  CHECK(t.net.done("D")[w].ok());
  t.net.Advance(1000ms);
  // At most one of the two holds WRITE, and both read the same bytes: D's,
  // written after G's claim was recalled.
  const bool d_writes = t.net.replica("D").HeldAt(7, t.net.now()) == Perm::kWrite;
  const bool g_writes = t.net.replica("G").HeldAt(7, t.net.now()) == Perm::kWrite;
  CHECK_FALSE((d_writes && g_writes));
  const std::vector<uint8_t> at_g = t.Read("G", 7);
  const std::vector<uint8_t> at_d = t.Read("D", 7);
  CHECK(at_g == at_d);
  CHECK(at_d == Fill('d'));
}

TEST_CASE("reparenting: a live proxy waiting for its failed child is not written off by its parent, and the claims stand") {
  // G, below E below C, holds WRITE on blocks 7 and 8. E is killed; D
  // writes block 7 from the other branch, so A recalls C, which must wait
  // out E's lease and grace period (G may still claim). G joins C and claims
  // both blocks back. A's INVALIDATE of C must wait as long as C does: had A
  // given up after C's own lease, it would declare the live C failed, C
  // would join again, and G's claims would be lost with C's old grants.
  Fig7 t;
  t.net.AddNode("G", Cfg(1, 7), "E");
  t.Join("D");
  t.Join("G");
  REQUIRE(t.Write("G", 7, Fill('g')).ok());
  REQUIRE(t.Write("G", 8, Fill('g')).ok());
  t.net.Advance(20000ms);
  t.net.Kill("E");  // C sees E's link close at once
  uint64_t w = t.net.Act("D", [](Replica& r, Time now) { return r.WriteLocal(7, 0, Fill('d'), now); });
  t.net.Advance(3000ms);  // the recall reached C
  t.net.MoveTo("G", "C");
  t.net.Advance(1000ms);
  CHECK(t.net.replica("G").stats(t.net.now()).recovered == 2);
  // G writes block 8 again, under the claimed WRITE: acknowledged at once.
  REQUIRE(t.Write("G", 8, Fill('h')).ok());
  const bool written = AdvanceUntilDone(t, "D", w, 90000ms);
  CHECK(written);
  if (written) CHECK(t.net.done("D")[w].ok());
  t.net.Advance(30000ms);
  CHECK(t.net.replica("C").stats(t.net.now()).rejoins == 0);
  CHECK(t.net.replica("A").stats(t.net.now()).failed_children == 0);
  CHECK(t.net.replica("G").stats(t.net.now()).recovery_lost == 0);
  // G's claim of block 7 went up with C's answer to the recall, and D wrote
  // over it; block 8, which no one else wrote, holds G's latest bytes.
  CHECK(t.Read("D", 7) == Fill('d'));
  CHECK(t.Read("D", 8) == Fill('h'));
  CHECK(t.Read("G", 8) == Fill('h'));
  // G writes block 7 again through C; everyone reads it.
  REQUIRE(t.Write("G", 7, Fill('h')).ok());
  CHECK(t.Read("D", 7) == Fill('h'));
  CHECK(t.Read("G", 7) == Fill('h'));
}

TEST_CASE("leases: a PUT does not complete while the grant of a child whose link dropped still stands") {
  // B holds a READ copy of block 7. A writes the block through (a PUT) and
  // sends B an INVALIDATE; B's link drops before it arrives, B alive. The
  // failed INVALIDATE leaves B's grant standing until its lease is over:
  // the PUT must wait as long, for B may read its copy until then.
  Fig7 t;
  t.Join("B");
  REQUIRE(t.Read("B", 7) == Fill('o'));
  Time put_done{};
  bool stale = false;
  int reads = 0;
  t.net.on_done = [&](const std::string& node, const LocalDone& d) {
    if (node == "A" && put_done == Time{}) put_done = t.net.now();
    if (node == "B") {
      ++reads;
      if (put_done != Time{} && d.data == Fill('o')) stale = true;
    }
  };
  uint64_t p = t.net.Act("A", [](Replica& r, Time now) { return r.PutLocal(7, Fill('p'), now); });
  t.net.Advance(100ms);  // the INVALIDATE is on its way to B
  t.net.MoveTo("B", "A");  // B's link closes; B joins A again over a new one
  for (int i = 0; i < 300; ++i) {  // B reads every 250 ms for 75 s
    t.net.Act("B", [](Replica& r, Time now) { return r.ReadLocal(7, now); });
    t.net.Advance(250ms);
  }
  REQUIRE(t.net.done("A").count(p));
  CHECK(t.net.done("A")[p].ok());
  CHECK(reads > 0);
  CHECK_FALSE(stale);
  CHECK(StoreBlock(t.net, 7) == Fill('p'));
  CHECK(t.Read("B", 7) == Fill('p'));
}

TEST_CASE("a SYNC_WRITE child's FLUSH that a proxy sends again after a timeout still reaches the root") {
  // G (SYNC_WRITE) flushes block 7 through E. E takes G's data and WRITE
  // and sends the FLUSH on to C, which is stopped for a moment: the FLUSH is
  // lost, and E's call times out. E must send the same FLUSH again, not
  // start over and take it for a stale one (G's WRITE is gone by then),
  // which would acknowledge G's flush with the bytes left dirty at E.
  Fig7 t;
  AddSyncWriter(t, "E");
  t.Join("D");
  t.Join("G");
  REQUIRE(t.Write("G", 7, Fill('g')).ok());  // dirty at G
  t.net.SetDown("C", true);
  uint64_t f = t.net.Act("G", [](Replica& r, Time now) { return r.FlushLocal(7, Perm::kRead, now); });
  t.net.Advance(1000ms);  // G's FLUSH reaches E; E's to C is lost
  t.net.SetDown("C", false);
  REQUIRE(AdvanceUntilDone(t, "G", f, 70000ms));
  CHECK(t.net.done("G")[f].ok());
  CHECK(StoreBlock(t.net, 7) == Fill('g'));
  CHECK(t.root_syncs() >= 1);
  CHECK_FALSE(t.net.replica("E").IsDirty(7));
  CHECK(t.Read("D", 7) == Fill('g'));
}

TEST_CASE("takeover: a standby root refuses children, then takes their claims on trust and makes others wait") {
  SimNet net;
  net.AddRoot("A", Cfg(32002, 1));
  Replica& s = net.AddRoot("S", Cfg(5, 9));
  s.SetAuthority(Time{}, net.now());  // a standby
  net.AddNode("L", Cfg(1, 4), "A");
  net.AddNode("M", Cfg(1, 5), "A");
  for (const char* n : {"L", "M"}) {
    net.Act(n, [](Replica& r, Time now) { r.Start(now); return 0; });
    net.Run();
    REQUIRE(net.replica(n).connected());
  }
  // L writes block 7 (async: dirty at L only); M reads block 9.
  uint64_t w = net.Act("L", [](Replica& r, Time now) { return r.WriteLocal(7, 0, Fill('n'), now); });
  uint64_t r9 = net.Act("M", [](Replica& r, Time now) { return r.ReadLocal(9, now); });
  net.Run();
  REQUIRE(net.done("L")[w].ok());
  REQUIRE(net.done("M")[r9].ok());
  net.Kill("A");
  // While S is a standby, a child's CONNECT is refused: it would look elsewhere.
  net.MoveTo("L", "S");
  net.Advance(500ms);
  CHECK_FALSE(net.replica("L").connected());
  // S takes over: L's next try joins, and its claim is taken on trust.
  net.Act("S", [](Replica& r, Time now) { r.TakeOver(now); return 0; });
  net.MoveTo("L", "S");
  net.MoveTo("M", "S");
  net.Advance(500ms);
  REQUIRE(net.replica("L").connected());
  CHECK(net.replica("L").HeldAt(7, net.now()) == Perm::kWrite);
  CHECK(net.replica("L").stats(net.now()).recovered == 1);
  CHECK(net.replica("S").stats(net.now()).claims_served == 1);
  // M's read and S's own wait out the grace, then see L's bytes (recalled).
  uint64_t m7 = net.Act("M", [](Replica& r, Time now) { return r.ReadLocal(7, now); });
  uint64_t s7 = net.Act("S", [](Replica& r, Time now) { return r.ReadLocal(7, now); });
  net.Advance(5000ms);
  CHECK_FALSE(net.done("M").count(m7));
  CHECK_FALSE(net.done("S").count(s7));
  net.Advance(30000ms);  // the grace: a lease (30 s) and the margin
  REQUIRE(net.done("M").count(m7));
  REQUIRE(net.done("S").count(s7));
  CHECK(net.reads("M")[m7] == Fill('n'));
  CHECK(net.reads("S")[s7] == Fill('n'));
}

TEST_CASE("takeover: a root whose authority lapsed grants nothing and writes nothing to its store") {
  SimNet net;
  Replica& a = net.AddRoot("A", Cfg(32002, 1));
  a.SetAuthority(net.now() + 2000ms, net.now());  // a root lease from its standby
  net.AddNode("L", Cfg(1, 4), "A");
  net.Act("L", [](Replica& r, Time now) { r.Start(now); return 0; });
  net.Run();
  REQUIRE(net.replica("L").connected());
  // The lease a child gets is cut to the root's authority.
  CHECK(net.replica("L").stats(net.now()).ms_left <= 2000);
  uint64_t w = net.Act("L", [](Replica& r, Time now) { return r.PutLocal(3, Fill('p'), now); });
  net.Run();
  REQUIRE(net.done("L")[w].ok());
  net.Advance(2500ms);  // past the authority
  CHECK_FALSE(net.replica("L").stats(net.now()).valid);
  uint64_t w2 = net.Act("L", [](Replica& r, Time now) { return r.PutLocal(3, Fill('q'), now); });
  uint64_t ra = net.Act("A", [](Replica& r, Time now) { return r.ReadLocal(3, now); });
  net.Advance(3000ms);
  CHECK_FALSE(net.done("A").count(ra));  // local I/O waits
  CHECK(StoreBlock(net, 3) == Fill('p'));  // the late PUT never reached the store
  CHECK((!net.done("L").count(w2) || !net.done("L")[w2].ok()));
  a.SetAuthority(net.now() + 1000ms, net.now());  // renewed
  net.Advance(100ms);
  REQUIRE(net.done("A").count(ra));
  CHECK(net.reads("A")[ra] == Fill('p'));
}

TEST_CASE("takeover: a write queued before the root's authority lapsed is not applied after it") {
  SimNet net;
  Replica& a = net.AddRoot("A", Cfg(32002, 1));
  net.AddNode("far", Cfg(1, 4), "A", 1500ms);  // an INVALIDATE to it takes 3 s to answer
  net.AddNode("near", Cfg(1, 5), "A");
  for (const char* n : {"far", "near"}) {
    net.Act(n, [](Replica& r, Time now) { r.Start(now); return 0; });
    net.Run();
  }
  uint64_t r = net.Act("far", [](Replica& rep, Time now) { return rep.ReadLocal(3, now); });
  net.Run();
  REQUIRE(net.done("far")[r].ok());
  a.SetAuthority(net.now() + 1000ms, net.now());
  // The PUT is admitted, then waits for far's answer, which comes after
  // the authority has lapsed.
  net.Act("near", [](Replica& rep, Time now) { return rep.PutLocal(3, Fill('p'), now); });
  net.Advance(4000ms);
  CHECK(StoreBlock(net, 3) == std::vector<uint8_t>(kBs, 0));
  a.SetAuthority(net.now() + 10000ms, net.now());  // renewed: it goes on
  net.Advance(200ms);
  CHECK(StoreBlock(net, 3) == Fill('p'));
}

// ---- Ranges (the data-path issue) ----

TEST_CASE("ranges: neighbouring blocks travel as one request and one answer at every level") {
  Fig7 t;
  t.Join("E");
  t.net.TakeLog();
  const std::vector<uint64_t> ops = t.ReadTogether("E", 0, 8);
  for (uint64_t op : ops) CHECK(t.net.done("E")[op].ok());
  CHECK(t.net.TakeLog() == Log{
      "E->C IO_REQUEST/GET vol=26924852 block=0 count=8 perm=READ",
      "C->A IO_REQUEST/GET vol=32002 block=0 count=8 perm=READ",
      "A->C OK_REPLY vol=32002 block=0 count=8 perm=READ ttl=1200000 hb_ttl=30000 data",
      "C->E OK_REPLY vol=26924852 block=0 count=8 perm=READ ttl=1198000 hb_ttl=28000 data",
  });
  CHECK(t.net.reads("E")[ops[7]] == Fill('o'));  // block 7
  CHECK(t.net.replica("C").copies() == 8);       // the proxy kept them all
}

TEST_CASE("ranges: a sync write of a range is one LOCK and one FLUSH, and leaves the writer's copies clean") {
  Fig7 t;
  t.Join("E");
  t.net.TakeLog();
  const uint64_t syncs_before = t.root_syncs();
  // What Volume::Write sends in sync mode: each whole block's write, then
  // its durable flush, queued behind it, in one event.
  std::vector<uint64_t> ops;
  t.net.Act("E", [&](Replica& r, Time now) {
    for (uint64_t b = 0; b < 8; ++b) ops.push_back(r.WriteLocal(b, 0, Fill(static_cast<char>('a' + b)), now));
    for (uint64_t b = 0; b < 8; ++b) ops.push_back(r.FlushLocal(b, Perm::kWrite, now, /*durable=*/true));
    return 0;
  });
  t.net.Run();
  for (uint64_t op : ops) CHECK(t.net.done("E")[op].ok());
  CHECK(t.net.TakeLog() == Log{
      "E->C IO_REQUEST/LOCK vol=26924852 block=0 count=8 perm=WRITE",
      "C->A IO_REQUEST/LOCK vol=32002 block=0 count=8 perm=WRITE",
      "A->C OK_REPLY vol=32002 block=0 count=8 perm=WRITE ttl=1200000 hb_ttl=30000",
      "C->E OK_REPLY vol=26924852 block=0 count=8 perm=WRITE ttl=1198000 hb_ttl=28000",
      "E->C IO_REQUEST/FLUSH vol=26924852 block=0 count=8 perm=WRITE data",
      "C->A IO_REQUEST/FLUSH vol=32002 block=0 count=8 perm=WRITE data",
      "A->C OK_REPLY block=0 count=8",
      "C->E OK_REPLY block=0 count=8",
  });
  CHECK(t.root_syncs() - syncs_before == 1);  // one sync for the range
  for (uint64_t b = 0; b < 8; ++b) {
    CAPTURE(b);
    std::vector<std::byte> stored(kBs);
    REQUIRE(t.net.store("A")->ReadBlock(b, stored).ok());
    CHECK(std::memcmp(stored.data(), Fill(static_cast<char>('a' + b)).data(), kBs) == 0);
    CHECK(!t.net.replica("E").IsDirty(b));  // the answer marked them clean
    CHECK(t.net.replica("E").HeldAt(b, t.net.now()) == Perm::kWrite);  // and the writer goes on writing
  }
}

TEST_CASE("ranges: the root stores a FLUSH range at once, and other nodes read the new bytes from it") {
  Fig7 t;
  t.Join("E");
  t.Join("D");
  std::vector<uint64_t> ops = t.WriteTogether("E", 0, 8, 'a');
  t.net.TakeLog();
  const uint64_t syncs_before = t.root_syncs();
  t.net.Act("E", [&](Replica& r, Time now) {  // the flusher's way: E keeps READ
    for (uint64_t b = 0; b < 8; ++b) ops.push_back(r.FlushLocal(b, Perm::kRead, now));
    return 0;
  });
  t.net.Run();
  for (uint64_t op : ops) CHECK(t.net.done("E")[op].ok());
  const Log log = t.net.TakeLog();
  CHECK(std::count(log.begin(), log.end(), "C->A IO_REQUEST/FLUSH vol=32002 block=0 count=8 perm=READ data") == 1);
  CHECK(std::count(log.begin(), log.end(), "A->C OK_REPLY block=0 count=8") == 1);
  CHECK(t.root_syncs() == syncs_before);  // an async writer's flush waits for no sync
  for (uint64_t b = 0; b < 8; ++b) {
    CAPTURE(b);
    CHECK(t.net.replica("A").IsDirty(b));                         // in the root's cache, to be written back
    CHECK(t.Read("D", b) == Fill(static_cast<char>('a' + b)));  // and served from there
  }
  uint64_t sync = t.net.Act("D", [](Replica& r, Time now) { return r.SyncLocal(now); });
  t.net.Run();
  REQUIRE(t.net.done("D")[sync].ok());
  for (uint64_t b = 0; b < 8; ++b) CHECK(StoreBlock(t.net, b) == Fill(static_cast<char>('a' + b)));
}

TEST_CASE("ranges: a sync writer's FLUSH range fails, block by block, when the root cannot store it") {
  Fig7 t;
  t.Join("E");
  for (uint64_t op : t.WriteTogether("E", 0, 4, 'w', /*same=*/true)) REQUIRE(t.net.done("E")[op].ok());
  std::vector<uint64_t> ops;
  t.net.faults("A")->Fail(FaultStore::Op::kWrite, Status::IOError("no space left"));
  t.net.Act("E", [&](Replica& r, Time now) {
    for (uint64_t b = 0; b < 4; ++b) ops.push_back(r.FlushLocal(b, Perm::kWrite, now, /*durable=*/true));
    return 0;
  });
  t.net.Run();
  for (uint64_t op : ops) {
    REQUIRE(t.net.done("E").count(op));
    CHECK_FALSE(t.net.done("E")[op].ok());  // never acknowledged as durable
  }
  for (uint64_t b = 0; b < 4; ++b) CHECK(t.net.replica("E").IsDirty(b));  // still to be written
}

TEST_CASE("sync writes: a flush sends the bytes its writer handed over only while the slot still holds them") {
  Fig7 t;
  t.Join("E");
  for (uint64_t op : t.WriteTogether("E", 0, 2, 'a', /*same=*/true)) REQUIRE(t.net.done("E")[op].ok());  // E takes WRITE
  BlockTable& table = *t.net.replica("E").table();
  const int64_t now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.net.now().time_since_epoch()).count();
  auto write_hit = [&](uint64_t b, char c) {
    BlockTable::WriteMark mark;
    const std::vector<uint8_t> bytes = Fill(c);
    REQUIRE(table.WriteHit(b, 0, bytes, now_ns, &mark));
    return mark;
  };
  auto flush_with = [&](uint64_t b, char c, BlockTable::WriteMark mark) {
    const Carried carried{Bytes(Fill(c)), mark};
    uint64_t op = 0;
    t.net.Act("E", [&](Replica& r, Time now) { return op = r.FlushLocal(b, Perm::kWrite, now, true, &carried); });
    t.net.Run();
    REQUIRE(t.net.done("E")[op].ok());
  };
  auto stored = [&](uint64_t b) {
    std::vector<std::byte> got(kBs);
    REQUIRE(t.net.store("A")->ReadBlock(b, got).ok());
    return std::vector<uint8_t>(reinterpret_cast<uint8_t*>(got.data()), reinterpret_cast<uint8_t*>(got.data()) + kBs);
  };
  // Written again after the bytes were handed over: the slot's bytes go.
  const BlockTable::WriteMark old = write_hit(0, 'p');
  write_hit(0, 'q');
  flush_with(0, 'p', old);
  CHECK(stored(0) == Fill('q'));
  CHECK(!t.net.replica("E").IsDirty(0));
  // Nothing written since: the handed-over bytes go as they are, without a
  // copy of the slot. (They differ from the slot's here only to show which
  // ones went; a real writer hands over what it wrote.)
  flush_with(1, 'z', write_hit(1, 'r'));
  CHECK(stored(1) == Fill('z'));
}

TEST_CASE("sync writes: a flush whose block a barrier took first goes up alone, and takes no other writer's block") {
  Fig7 t;
  t.Join("E");
  for (uint64_t op : t.WriteTogether("E", 0, 2, 'a', /*same=*/true)) REQUIRE(t.net.done("E")[op].ok());  // E takes WRITE
  uint64_t sync = t.net.Act("E", [](Replica& r, Time now) { return r.SyncLocal(now); });
  t.net.Run();
  REQUIRE(t.net.done("E")[sync].ok());
  BlockTable& table = *t.net.replica("E").table();
  const int64_t now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.net.now().time_since_epoch()).count();
  auto write_hit = [&](uint64_t b, char c) {
    BlockTable::WriteMark mark;
    REQUIRE(table.WriteHit(b, 0, Fill(c), now_ns, &mark));
  };
  // A sync write of block 0 on the fast path; before its durable flush
  // reaches the engine, an fsync's barrier takes the block up. The flush
  // queues behind the barrier's and then finds the block clean.
  write_hit(0, 'p');
  t.net.TakeLog();
  uint64_t barrier = 0, flush = 0;
  t.net.Act("E", [&](Replica& r, Time now) {
    barrier = r.SyncLocal(now);
    return flush = r.FlushLocal(0, Perm::kWrite, now, /*durable=*/true);
  });
  // Meanwhile another sync write of block 1, its flush not yet asked for.
  write_hit(1, 'q');
  t.net.Run();
  REQUIRE(t.net.done("E")[barrier].ok());
  REQUIRE(t.net.done("E")[flush].ok());
  CHECK(StoreBlock(t.net, 0) == Fill('p'));
  // The flush made block 0 durable with a barrier that only went up: block
  // 1 stays for its own flush (a barrier that flushed it would leave that
  // flush to find it clean, and start another barrier, and so on).
  const Log log = t.net.TakeLog();
  CHECK(std::none_of(log.begin(), log.end(), [](const std::string& l) {
    return l.rfind("E->C IO_REQUEST/FLUSH", 0) == 0 && l.find("block=1") != std::string::npos;
  }));
  CHECK(std::count(log.begin(), log.end(), "E->C IO_REQUEST/FLUSH vol=26924852") == 2);  // both barriers went up
  CHECK(t.net.replica("E").IsDirty(1));
  t.net.Act("E", [&](Replica& r, Time now) { return flush = r.FlushLocal(1, Perm::kWrite, now, /*durable=*/true); });
  t.net.Run();
  REQUIRE(t.net.done("E")[flush].ok());
  CHECK(StoreBlock(t.net, 1) == Fill('q'));
  CHECK(!t.net.replica("E").IsDirty(1));
}

TEST_CASE("ranges: partial writes to copies held READ take WRITE with one LOCK range and patch the copies") {
  Fig7 t;
  t.Join("E");
  for (uint64_t op : t.ReadTogether("E", 6, 4)) REQUIRE(t.net.done("E")[op].ok());
  t.net.TakeLog();
  std::vector<uint64_t> ops;
  t.net.Act("E", [&](Replica& r, Time now) {
    for (uint64_t b = 6; b < 10; ++b) ops.push_back(r.WriteLocal(b, 100, std::vector<uint8_t>(10, 'x'), now));
    return 0;
  });
  t.net.Run();
  for (uint64_t op : ops) CHECK(t.net.done("E")[op].ok());
  CHECK(t.net.TakeLog() == Log{
      "E->C IO_REQUEST/LOCK vol=26924852 block=6 count=4 perm=WRITE",  // the bytes are here: no GET
      "C->A IO_REQUEST/LOCK vol=32002 block=6 count=4 perm=WRITE",
      "A->C OK_REPLY vol=32002 block=6 count=4 perm=WRITE ttl=1200000 hb_ttl=30000",
      "C->E OK_REPLY vol=26924852 block=6 count=4 perm=WRITE ttl=1198000 hb_ttl=28000",
  });
  for (uint64_t b = 6; b < 10; ++b) {
    CAPTURE(b);
    std::vector<uint8_t> want = b == 7 ? Fill('o') : std::vector<uint8_t>(kBs, 0);
    std::fill(want.begin() + 100, want.begin() + 110, 'x');
    CHECK(CopyAt(t.net, "E", b) == want);
    CHECK(t.net.replica("E").IsDirty(b));
    CHECK(t.net.replica("E").HeldAt(b, t.net.now()) == Perm::kWrite);
  }
}

TEST_CASE("ranges: the root reads a cold range from its store at once and answers it whole") {
  Fig7 t;
  t.Join("E");
  const uint64_t reads_before = t.net.faults("A")->calls(FaultStore::Op::kRead);
  t.net.TakeLog();
  const std::vector<uint64_t> ops = t.ReadTogether("E", 0, 8);
  for (uint64_t op : ops) REQUIRE(t.net.done("E")[op].ok());
  CHECK(t.net.reads("E")[ops[7]] == Fill('o'));
  CHECK(t.net.faults("A")->calls(FaultStore::Op::kRead) - reads_before == 1);  // one read of 8 blocks
  Log from_a;
  for (const std::string& l : t.net.TakeLog())
    if (l.starts_with("A->C")) from_a.push_back(l);
  CHECK(from_a == Log{"A->C OK_REPLY vol=32002 block=0 count=8 perm=READ ttl=1200000 hb_ttl=30000 data"});
  // Each block of the answer was taken whole below: permission, grant
  // time, bytes and the root's version.
  for (uint64_t b = 0; b < 8; ++b) {
    CAPTURE(b);
    CHECK(t.net.replica("E").HeldAt(b, t.net.now()) == Perm::kRead);
    CHECK(t.net.replica("E").StateOf(b).version == t.net.replica("A").StateOf(b).version);
    CHECK(t.net.replica("E").StateOf(b).version != 0);
  }
  // The root granted them as it would one by one: a write elsewhere
  // recalls the copies it gave.
  t.Join("D");
  REQUIRE(t.Write("D", 7, Fill('d')).ok());
  const Log log = t.net.TakeLog();
  CHECK(std::count_if(log.begin(), log.end(), [](const std::string& l) {
          return l.starts_with("A->C INVALIDATE") && l.find("block=7 ") != std::string::npos;
        }) == 1);
}

TEST_CASE("ranges: a cold range whose store read fails is read again block by block, and fails if that fails") {
  for (int failures : {1, 2}) {
    CAPTURE(failures);
    Fig7 t;
    t.Join("E");
    t.net.faults("A")->Fail(FaultStore::Op::kRead, Status::IOError("bad sector"), failures);
    const std::vector<uint64_t> ops = t.ReadTogether("E", 0, 4);
    // The range's read, then one read of the four again (their queues'
    // reads join): the second failure fails them, with an error, not a hang.
    CHECK(t.net.faults("A")->calls(FaultStore::Op::kRead) == 2);
    for (uint64_t op : ops) {
      REQUIRE(t.net.done("E").count(op));
      CHECK(t.net.done("E")[op].ok() == (failures == 1));
    }
    CHECK(t.net.replica("A").copies() == (failures == 1 ? 4u : 0u));
  }
}

TEST_CASE("ranges: an answer is sent in parts, so a block held elsewhere never holds back the others") {
  Fig7 t;
  t.Join("D");
  t.Join("E");
  REQUIRE(t.Write("D", 3, Fill('d')).ok());  // dirty at D: A must recall B for block 3
  t.net.TakeLog();
  const std::vector<uint64_t> ops = t.ReadTogether("E", 0, 8);
  for (uint64_t op : ops) REQUIRE(t.net.done("E")[op].ok());
  CHECK(t.net.reads("E")[ops[3]] == Fill('d'));  // recalled, not the store's
  CHECK(t.net.reads("E")[ops[7]] == Fill('o'));
  Log log = t.net.TakeLog();
  Log from_a;
  for (const std::string& l : log)
    if (l.starts_with("A->C")) from_a.push_back(l);
  CHECK(from_a == Log{
      "A->C OK_REPLY vol=32002 block=0 count=3 perm=READ ttl=1200000 hb_ttl=30000 data more",
      "A->C OK_REPLY vol=32002 block=4 count=4 perm=READ ttl=1200000 hb_ttl=30000 data more",
      "A->C OK_REPLY vol=32002 block=3 count=1 perm=READ ttl=1200000 hb_ttl=30000 data",  // after B's answer
  });
  CHECK(std::count(log.begin(), log.end(), "A->B INVALIDATE vol=32002 block=3 perm=READ") == 1);
}

TEST_CASE("ranges: a write over a range recalls every reader's copies in one INVALIDATE each") {
  Fig7 t;
  t.Join("E");
  t.Join("D");
  t.net.Act("E", [&](Replica& r, Time now) {
    for (uint64_t b = 0; b < 4; ++b) r.ReadLocal(b, now);
    return 0;
  });
  t.net.Run();
  t.net.TakeLog();
  std::vector<uint64_t> ops;
  t.net.Act("D", [&](Replica& r, Time now) {
    for (uint64_t b = 0; b < 4; ++b) ops.push_back(r.WriteLocal(b, 0, Fill('w'), now));
    return 0;
  });
  t.net.Run();
  for (uint64_t op : ops) CHECK(t.net.done("D")[op].ok());
  Log log = t.net.TakeLog();
  CHECK(std::count(log.begin(), log.end(), "A->C INVALIDATE vol=32002 block=0 count=4 perm=NONE") == 1);
  CHECK(std::count(log.begin(), log.end(), "C->E INVALIDATE vol=26924852 block=0 count=4 perm=NONE") == 1);
  CHECK(std::count(log.begin(), log.end(), "D->B IO_REQUEST/LOCK vol=32002 block=0 count=4 perm=WRITE") == 1);
  CHECK(t.Read("E", 2) == Fill('w'));
}

TEST_CASE("eviction: a leaf with a small cache reads and writes far more than it holds, and nothing is lost") {
  Fig7 t;
  ReplicaConfig small = Cfg(1, 8);
  small.cache_bytes = 8 * kBs;  // 8 blocks: 4 sets of 2
  small.cache_ways = 2;
  t.net.AddNode("S", small, "C");
  t.Join("S");
  t.Join("F");
  std::mt19937 rng(5);
  std::map<uint64_t, uint8_t> latest;
  for (int i = 0; i < 300; ++i) {
    const uint64_t b = rng() % 40;
    if (rng() % 2) {
      const uint8_t v = static_cast<uint8_t>('a' + rng() % 26);
      REQUIRE(t.Write("S", b, Fill(static_cast<char>(v))).ok());
      latest[b] = v;
    } else {
      const std::vector<uint8_t> got = t.Read("S", b);
      CHECK(got[0] == (latest.count(b) ? latest[b] : (b == 7 ? 'o' : 0)));
    }
    CHECK(t.net.replica("S").copies() <= 8);
  }
  // Everything written is there for another reader, dirty victims having
  // gone up as they were evicted.
  for (const auto& [b, v] : latest) CHECK(t.Read("F", b)[0] == v);
  // The parent was told of the copies S dropped: it records no grant to S
  // for blocks S no longer has.
  const Replica& c = t.net.replica("C");
  uint64_t granted_to_s = 0;
  for (uint64_t b = 0; b < 40; ++b) granted_to_s += c.GrantOf(b, 3) != Perm::kNone;  // S is C's link 3
  CHECK(granted_to_s <= 8);
}

TEST_CASE("eviction: a proxy with little room recalls its children's copies before it reuses a slot") {
  Fig7 t;
  ReplicaConfig small = Cfg(9, 8);
  small.cache_bytes = 4 * kBs;  // 4 blocks: 2 sets of 2
  small.cache_ways = 2;
  t.net.AddNode("P", small, "A");  // a second, small proxy, with E2 below it
  t.net.AddNode("E2", Cfg(1, 9), "P");
  t.Join("E2");
  t.Join("D");
  for (uint64_t b = 0; b < 12; ++b) REQUIRE(t.Read("E2", b).size() == kBs);
  // P holds at most 4 blocks, so E2 (whose copies came through P) at most 4 grants.
  CHECK(t.net.replica("P").copies() <= 4);
  CHECK(t.net.replica("P").stats(t.net.now()).grants <= 4);
  // A write elsewhere is seen by E2 whatever P had to drop.
  REQUIRE(t.Write("D", 11, Fill('n')).ok());
  CHECK(t.Read("E2", 11) == Fill('n'));
  CHECK(t.Read("E2", 0) == std::vector<uint8_t>(kBs, 0));
}
