#include "net/tree_node.h"

#include <doctest/doctest.h>

#include <atomic>
#include <cstring>
#include <random>
#include <stdexcept>
#include <thread>

#include "core/fault_store.h"
#include "core/mem_store.h"
#include "core/volume.h"
#include "test/lin/linearizability.h"

using namespace vshare;
using namespace vshare::net;
using namespace std::chrono_literals;

namespace {

constexpr uint32_t kBs = 4096;

ReplicaConfig Cfg(uint32_t id, uint8_t self, uint64_t blocks = 256) {
  ReplicaConfig c;
  c.volume_name = "vol";
  c.volume_id = id;
  c.volume_size = blocks * kBs;
  c.block_size = kBs;
  c.self[15] = self;
  return c;
}

std::string Addr(uint16_t port) { return "127.0.0.1:" + std::to_string(port); }

std::vector<uint8_t> Fill(char c) { return std::vector<uint8_t>(kBs, static_cast<uint8_t>(c)); }

// One node on loopback, with the Volume the local interface would use.
struct Node {
  std::unique_ptr<TreeNode> tree;
  std::unique_ptr<Volume> volume;
  Node(TreeNodeOptions opts, ReplicaConfig cfg, std::unique_ptr<BlockStore> store = nullptr)
      : tree(std::make_unique<TreeNode>(std::move(opts), std::move(cfg), std::move(store))) {}
  Status Start() {
    Status st = tree->Start();
    if (st.ok()) volume = std::make_unique<Volume>(tree->volume_name(), tree->table(), tree.get());
    return st;
  }
  Status Read(uint64_t block, std::vector<uint8_t>* out) {
    out->assign(kBs, 0);
    size_t done = 0;
    return volume->Read(block * kBs, std::as_writable_bytes(std::span(*out)), &done);
  }
  Status Write(uint64_t block, size_t offset, const std::vector<uint8_t>& data) {
    size_t done = 0;
    return volume->Write(block * kBs + offset, std::as_bytes(std::span(data)), &done);
  }
};

// A root over an in-memory store, a proxy under it and two leaves under the
// proxy, all on loopback with real sockets.
struct Tree {
  MemStore store{256 * kBs, kBs};
  std::unique_ptr<Node> root, proxy, leaf1, leaf2;

  explicit Tree(std::chrono::milliseconds timeout = 5000ms) {
    root = std::make_unique<Node>(TreeNodeOptions{"127.0.0.1:0", "", {}, timeout}, Cfg(100, 1),
                                  std::make_unique<FaultStore>(&store));
    REQUIRE(root->Start().ok());
    proxy = std::make_unique<Node>(TreeNodeOptions{"127.0.0.1:0", Addr(root->tree->port()), {}, timeout}, Cfg(200, 2));
    REQUIRE(proxy->Start().ok());
    leaf1 = std::make_unique<Node>(TreeNodeOptions{"", Addr(proxy->tree->port()), {}, timeout}, Cfg(0, 3));
    REQUIRE(leaf1->Start().ok());
    leaf2 = std::make_unique<Node>(TreeNodeOptions{"", Addr(proxy->tree->port()), {}, timeout}, Cfg(0, 4));
    REQUIRE(leaf2->Start().ok());
  }
};

}  // namespace

TEST_CASE("a tree on loopback: reads come down, a proxy serves its second child, writes recall copies") {
  Tree t;
  CHECK(t.leaf1->tree->table()->volume_size() == 256 * kBs);  // learned at CONNECT
  std::vector<std::byte> seed(kBs, std::byte{'s'});
  REQUIRE(t.store.WriteBlock(5, seed).ok());

  std::vector<uint8_t> got;
  REQUIRE(t.leaf1->Read(5, &got).ok());
  CHECK(got == Fill('s'));
  const uint64_t store_reads = t.store.reads();
  REQUIRE(t.leaf2->Read(5, &got).ok());  // served by the proxy's copy
  CHECK(got == Fill('s'));
  CHECK(t.store.reads() == store_reads);

  // The root writes: both leaves' copies are recalled first.
  REQUIRE(t.root->Write(5, 0, Fill('r')).ok());
  REQUIRE(t.leaf1->Read(5, &got).ok());
  CHECK(got == Fill('r'));
  REQUIRE(t.leaf2->Read(5, &got).ok());
  CHECK(got == Fill('r'));

  // A leaf writes part of the block (write-back, dirty at the leaf); the
  // other leaf and the root see it, the recall bringing the data up.
  std::vector<uint8_t> part(100, 'p');
  REQUIRE(t.leaf1->Write(5, 1000, part).ok());
  REQUIRE(t.leaf2->Read(5, &got).ok());
  CHECK(got[999] == 'r');
  CHECK(got[1000] == 'p');
  CHECK(got[1099] == 'p');
  CHECK(got[1100] == 'r');
  REQUIRE(t.root->Read(5, &got).ok());
  CHECK(got[1000] == 'p');

  // A flush (fsync) pushes a dirty block to the root's store.
  REQUIRE(t.leaf2->Write(6, 0, Fill('f')).ok());
  REQUIRE(t.leaf2->volume->Flush().ok());
  auto all = t.store.Contents();
  CHECK(std::memcmp(all.data() + 6 * kBs, Fill('f').data(), kBs) == 0);
  CHECK(t.proxy->tree->status().children == 2);
}

TEST_CASE("joining fails with a reason: nobody listening, or a volume the parent does not serve") {
  MemStore store(16 * kBs, kBs);
  // A port nobody listens on: bind one, note it, close it.
  uint16_t dead_port;
  {
    asio::io_context io;
    tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    dead_port = a.local_endpoint().port();
  }
  Node orphan(TreeNodeOptions{"", Addr(dead_port), {}, 2000ms}, Cfg(0, 9));
  Status st = orphan.Start();
  CHECK_FALSE(st.ok());
  CHECK(st.message().find("cannot connect to") != std::string::npos);

  Node root(TreeNodeOptions{"127.0.0.1:0", "", {}, 2000ms}, Cfg(1, 1, 16), std::make_unique<FaultStore>(&store));
  REQUIRE(root.Start().ok());
  ReplicaConfig other = Cfg(0, 2);
  other.volume_name = "other";
  Node stranger(TreeNodeOptions{"", Addr(root.tree->port()), {}, 2000ms}, other);
  st = stranger.Start();
  CHECK_FALSE(st.ok());
  CHECK(st.code() == Status::Code::kNotFound);
  CHECK(st.message().find("does not serve volume other") != std::string::npos);

  Node taken(TreeNodeOptions{Addr(root.tree->port()), "", {}, 2000ms}, Cfg(1, 1, 16), std::make_unique<FaultStore>(&store));
  CHECK(taken.Start().code() == Status::Code::kBusy);  // the address is in use
}

TEST_CASE("when the parent goes away, local operations fail in time instead of hanging") {
  Tree t(1500ms);
  std::vector<uint8_t> got;
  REQUIRE(t.leaf1->Read(9, &got).ok());
  t.root->tree->Stop();
  t.proxy->tree->Stop();
  Status st = t.leaf1->Read(10, &got);  // not cached: needs the (dead) proxy
  CHECK_FALSE(st.ok());
  CHECK(t.leaf1->tree->status().local_timeouts + 1 >= 1);
}

TEST_CASE("a write that timed out is not applied later") {
  // A leaf's partial write of block 4 needs the block's bytes, which the
  // root reads from a store that answers only after the leaf's I/O timeout.
  // The caller is told the write failed; when the bytes arrive at last, the
  // abandoned write must not land.
  MemStore store(16 * kBs, kBs);
  auto faults = std::make_unique<FaultStore>(&store);
  FaultStore* slow = faults.get();
  Node root(TreeNodeOptions{"127.0.0.1:0", "", {}, 5000ms}, Cfg(1, 1, 16), std::move(faults));
  REQUIRE(root.Start().ok());
  Node leaf(TreeNodeOptions{"", Addr(root.tree->port()), {}, 300ms}, Cfg(0, 2, 16));
  REQUIRE(leaf.Start().ok());
  slow->Delay(1500ms);
  const Status st = leaf.Write(4, 100, std::vector<uint8_t>(10, 'x'));
  CHECK(st.code() == Status::Code::kTimedOut);
  std::this_thread::sleep_for(2000ms);  // the store has answered by now
  slow->Delay(0ms);
  std::vector<uint8_t> got;
  REQUIRE(leaf.Read(4, &got).ok());
  CHECK(got == std::vector<uint8_t>(kBs, 0));
  REQUIRE(leaf.volume->Flush().ok());
  REQUIRE(root.Read(4, &got).ok());
  CHECK(got == std::vector<uint8_t>(kBs, 0));
  CHECK(leaf.tree->status().local_timeouts == 1);
}

TEST_CASE("a throw in the tick loop starts the loop again: heartbeats go on and the lease holds") {
  MemStore store(16 * kBs, kBs);
  ReplicaConfig rc = Cfg(1, 1, 16);
  rc.hb_ttl_ms = 1000;  // a lease of 1 s: without heartbeats it lapses well within the test
  Node root(TreeNodeOptions{"127.0.0.1:0", "", {}, 2000ms}, rc, std::make_unique<FaultStore>(&store));
  REQUIRE(root.Start().ok());
  std::atomic<int> ticks{0};
  TreeNodeOptions lo{"", Addr(root.tree->port()), {}, 2000ms};
  lo.on_tick = [&ticks] {
    if (++ticks == 5) throw std::runtime_error("injected fault");
  };
  Node leaf(std::move(lo), Cfg(0, 2, 16));
  REQUIRE(leaf.Start().ok());
  std::vector<uint8_t> got;
  REQUIRE(leaf.Read(3, &got).ok());
  std::this_thread::sleep_for(3000ms);  // three leases
  CHECK(ticks > 20);                    // the loop ran on after the throw
  // The root heard the leaf's heartbeats all along: it never declared it failed.
  const TreeStatus s = root.tree->status();
  CHECK(s.replica.failed_children == 0);
  CHECK(s.children == 1);
}

TEST_CASE("threads on two leaves and the root race on a few blocks: the history is linearizable") {
  Tree t;
  std::atomic<int> next_value{1};
  std::mutex mu;
  std::map<uint64_t, std::vector<lin::Op>> history;
  std::atomic<int> failures{0};
  const auto t0 = std::chrono::steady_clock::now();
  auto secs = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  auto worker = [&](Node* node, int process, uint32_t seed) {
    std::mt19937 rng(seed);
    for (int i = 0; i < 60; ++i) {
      const uint64_t block = 20 + rng() % 3;
      lin::Op op;
      op.process = process;
      op.is_write = rng() % 2;
      op.invoke = secs();
      if (op.is_write) {
        op.value = "v" + std::to_string(next_value++);
        std::vector<uint8_t> bytes(kBs, 0);
        std::memcpy(bytes.data(), op.value.data(), op.value.size());
        if (!node->Write(block, 0, bytes).ok()) ++failures;
      } else {
        std::vector<uint8_t> got;
        if (!node->Read(block, &got).ok()) ++failures;
        op.value = std::string(reinterpret_cast<const char*>(got.data()), strnlen(reinterpret_cast<const char*>(got.data()), kBs));
      }
      op.complete = secs();
      std::lock_guard lock(mu);
      history[block].push_back(op);
    }
  };
  std::vector<std::thread> threads;
  threads.emplace_back(worker, t.leaf1.get(), 1, 11);
  threads.emplace_back(worker, t.leaf1.get(), 2, 12);
  threads.emplace_back(worker, t.leaf2.get(), 3, 13);
  threads.emplace_back(worker, t.leaf2.get(), 4, 14);
  threads.emplace_back(worker, t.root.get(), 5, 15);
  for (auto& th : threads) th.join();
  CHECK(failures == 0);
  lin::HistoryReport r = lin::CheckHistory(history, "");
  CHECK(r.operations == 300);
  CHECK(r.keys == 3);
  CHECK_MESSAGE(r.violations == 0, (r.details.empty() ? std::string() : r.details[0]));
}

TEST_CASE("the root's store writes and syncs run one at a time, in the order asked for") {
  // Two writes of one block side by side could land older-last (two
  // barriers' write-backs can both ask for it); so none overlap at all.
  MemStore mem{256 * kBs, kBs};
  auto slow = std::make_unique<FaultStore>(&mem);
  slow->Delay(2ms);  // long enough for writes asked together to overlap if they may
  FaultStore* probe = slow.get();
  Node root(TreeNodeOptions{"", "", {}, 5000ms}, Cfg(100, 1), std::move(slow));
  REQUIRE(root.Start().ok());
  // Blocks far apart: each is its own store write, all asked for at once.
  for (int round = 0; round < 3; ++round) {
    for (uint64_t b = 0; b < 256; b += 8) REQUIRE(root.Write(b, 0, Fill(static_cast<char>('a' + round))).ok());
    std::vector<std::thread> syncs;
    for (int i = 0; i < 3; ++i) syncs.emplace_back([&] { CHECK(root.volume->Flush().ok()); });
    for (auto& t : syncs) t.join();
  }
  CHECK(probe->most_writes_at_once() == 1);
  std::vector<std::byte> all = mem.Contents();
  for (uint64_t b = 0; b < 256; b += 8) {
    CAPTURE(b);
    CHECK(static_cast<char>(all[b * kBs]) == 'c');
  }
  root.tree->Stop();
}
