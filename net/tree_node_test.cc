#include "net/tree_node.h"

#include <doctest/doctest.h>

#include <atomic>
#include <cstring>
#include <random>
#include <thread>

#include "core/mem_store.h"
#include "test/lin/linearizability.h"

using namespace vshare;
using namespace vshare::net;
using namespace std::chrono_literals;

namespace {

constexpr uint32_t kBs = 4096;

ReplicaConfig Cfg(uint32_t id, uint8_t self) {
  ReplicaConfig c;
  c.volume_name = "vol";
  c.volume_id = id;
  c.volume_size = 256 * kBs;
  c.block_size = kBs;
  c.self[15] = self;
  return c;
}

std::string Addr(uint16_t port) { return "127.0.0.1:" + std::to_string(port); }

// A root over an in-memory store, a proxy under it and two leaves under the
// proxy, all on loopback with real sockets.
struct Tree {
  MemStore store{256 * kBs, kBs};
  StoreBlockData root_data{&store};
  MapBlockData proxy_data, leaf1_data, leaf2_data;
  std::unique_ptr<TreeNode> root, proxy, leaf1, leaf2;

  explicit Tree(std::chrono::milliseconds timeout = 5000ms) {
    root = std::make_unique<TreeNode>(TreeNodeOptions{"127.0.0.1:0", "", {}, timeout}, Cfg(100, 1), &root_data);
    REQUIRE(root->Start().ok());
    proxy = std::make_unique<TreeNode>(TreeNodeOptions{"127.0.0.1:0", Addr(root->port()), {}, timeout}, Cfg(200, 2), &proxy_data);
    REQUIRE(proxy->Start().ok());
    leaf1 = std::make_unique<TreeNode>(TreeNodeOptions{"", Addr(proxy->port()), {}, timeout}, Cfg(0, 3), &leaf1_data);
    REQUIRE(leaf1->Start().ok());
    leaf2 = std::make_unique<TreeNode>(TreeNodeOptions{"", Addr(proxy->port()), {}, timeout}, Cfg(0, 4), &leaf2_data);
    REQUIRE(leaf2->Start().ok());
  }
};

std::vector<uint8_t> Fill(char c) { return std::vector<uint8_t>(kBs, static_cast<uint8_t>(c)); }

}  // namespace

TEST_CASE("a tree on loopback: reads come down, a proxy serves its second child, writes recall copies") {
  Tree t;
  CHECK(t.leaf1->volume_size() == 256 * kBs);  // learned at CONNECT
  std::vector<std::byte> seed(kBs, std::byte{'s'});
  REQUIRE(t.store.WriteBlock(5, seed).ok());

  std::vector<uint8_t> got;
  REQUIRE(t.leaf1->Read(5, &got).ok());
  CHECK(got == Fill('s'));
  uint64_t store_reads = t.store.reads();
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

  // Flush pushes a dirty block to the root's store.
  REQUIRE(t.leaf2->Write(6, 0, Fill('f')).ok());
  REQUIRE(t.leaf2->Flush(6).ok());
  auto all = t.store.Contents();
  CHECK(std::memcmp(all.data() + 6 * kBs, Fill('f').data(), kBs) == 0);
  CHECK(t.proxy->counters().children == 2);
}

TEST_CASE("joining fails with a reason: nobody listening, or a volume the parent does not serve") {
  MemStore store(16 * kBs, kBs);
  StoreBlockData data(&store);
  // A port nobody listens on: bind one, note it, close it.
  uint16_t dead_port;
  {
    asio::io_context io;
    tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    dead_port = a.local_endpoint().port();
  }
  MapBlockData copies;
  TreeNode orphan(TreeNodeOptions{"", Addr(dead_port), {}, 2000ms}, Cfg(0, 9), &copies);
  auto start = std::chrono::steady_clock::now();
  Status st = orphan.Start();
  CHECK_FALSE(st.ok());
  CHECK(st.message().find("cannot connect to parent") != std::string::npos);
  CHECK(std::chrono::steady_clock::now() - start < 3000ms);

  ReplicaConfig root_cfg = Cfg(1, 1);
  root_cfg.volume_size = 16 * kBs;
  TreeNode root(TreeNodeOptions{"127.0.0.1:0", "", {}, 2000ms}, root_cfg, &data);
  REQUIRE(root.Start().ok());
  ReplicaConfig other = Cfg(0, 2);
  other.volume_name = "other";
  MapBlockData copies2;
  TreeNode stranger(TreeNodeOptions{"", Addr(root.port()), {}, 2000ms}, other, &copies2);
  st = stranger.Start();
  CHECK_FALSE(st.ok());
  CHECK(st.message().find("does not serve volume other") != std::string::npos);

  TreeNode taken(TreeNodeOptions{Addr(root.port()), "", {}, 2000ms}, root_cfg, &data);
  CHECK(taken.Start().code() == Status::Code::kBusy);  // the address is in use
}

TEST_CASE("when the parent goes away, local operations fail in time instead of hanging") {
  Tree t(1500ms);
  std::vector<uint8_t> got;
  REQUIRE(t.leaf1->Read(9, &got).ok());
  t.root->Stop();
  t.proxy->Stop();
  auto start = std::chrono::steady_clock::now();
  Status st = t.leaf1->Read(10, &got);  // not cached: needs the (dead) proxy
  CHECK_FALSE(st.ok());
  CHECK(std::chrono::steady_clock::now() - start < 3000ms);
}

TEST_CASE("threads on two leaves and the root race on a few blocks: the history is linearizable") {
  Tree t;
  std::atomic<int> next_value{1};
  std::mutex mu;
  std::map<uint64_t, std::vector<lin::Op>> history;
  const auto t0 = std::chrono::steady_clock::now();
  auto secs = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  auto worker = [&](TreeNode* node, int process, uint32_t seed) {
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
        REQUIRE(node->Write(block, 0, bytes).ok());
      } else {
        std::vector<uint8_t> got;
        REQUIRE(node->Read(block, &got).ok());
        REQUIRE(got.size() == kBs);
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
  lin::HistoryReport r = lin::CheckHistory(history, "");
  CHECK(r.operations == 300);
  CHECK(r.keys == 3);
  CHECK_MESSAGE(r.violations == 0, (r.details.empty() ? std::string() : r.details[0]));
}
