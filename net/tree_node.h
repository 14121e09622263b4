// TreeNode: one node of the tree on the network, whatever its role (a root
// with or without children, a proxy, a leaf). It runs the protocol engine
// (core/replica.h) on its own I/O thread, accepts children on a listening
// socket, keeps one connection to its parent, and carries out the engine's
// effects: messages over the connections (net/connection.h), the root's
// store I/O on a pool of worker threads (never on the I/O thread, so a slow
// disk never delays a heartbeat), local completions to the threads waiting
// for them.
//
// It is the ControlPath of the node's Volume (core/volume.h): what the fast
// path cannot serve is posted to the I/O thread, and the caller waits at
// most io_timeout, then gets kTimedOut; what it asked for is cancelled.
//
// A timer ticks the engine every 50 ms. When the link to the parent closes,
// the node dials again (its grandparent first, then the other places it
// knows, backing off up to 5 s between rounds) and joins anew; children the
// engine declares failed have their links closed. A root given a peer runs
// a RootRole (core/root_role.h) and serves only while the role allows.
//
// Files: tree_node.cc (life, effects, children), parent_link.cc (dialing,
// joining, reparenting), peer_root.cc (the two roots), local_calls.cc (the
// ControlPath: waits, deadlines, cancellation).
#pragma once

#include <atomic>
#include <boost/asio.hpp>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "core/block_store.h"
#include "core/control_path.h"
#include "core/replica.h"
#include "core/root_role.h"
#include "core/traffic.h"
#include "core/tree_status.h"
#include "net/connection.h"

namespace vshare::net {

struct TreeNodeOptions {
  std::string listen;  // "HOST:PORT" to accept children on (port 0: any); empty: none
  std::string parent;  // "HOST:PORT" of the parent; empty: this node is the root
  // More places to join when the parent fails (a repeated --parent), tried
  // after the failed parent's own ancestors.
  std::vector<std::string> fallback_parents;
  std::chrono::milliseconds io_timeout{30000};
  // The root only: the other root of the volume (HOST:PORT), and whether
  // this one starts as its standby (core/root_role.h, doc/failover.md).
  std::string peer;
  bool standby = false;
  unsigned store_threads = 4;  // the root's store I/O pool
  // Tests only: called on the I/O thread at every tick, before the engine's.
  // A throw from it stands for a fault in the tick loop, which must start
  // again rather than end the node's heartbeats.
  std::function<void()> on_tick;
};

class TreeNode final : public ControlPath {
 public:
  // `store` is the root's (nullptr below it). cfg.is_root is taken from
  // opts.parent being empty.
  TreeNode(TreeNodeOptions opts, ReplicaConfig cfg, std::unique_ptr<BlockStore> store = nullptr);
  ~TreeNode() override;
  TreeNode(const TreeNode&) = delete;
  TreeNode& operator=(const TreeNode&) = delete;

  // Binds the listener, starts the threads and, below the root, connects to
  // the parent and joins the volume (CONNECT). Fails with a reason when the
  // address is taken, the parent cannot be reached in io_timeout, or it
  // refuses the volume. After it succeeds, table() is the node's table.
  Status Start();
  // Tells the parent we are going, closes every connection and stops the
  // threads. Pending local operations fail. Idempotent.
  void Stop();

  // --kernel-cache: how the engine's PageDrop effects are carried out
  // (fuse/page_dropper.h); `report(stuck)` may be called from any thread.
  // Set before Start. Without one, a drop completes at once.
  using PageDropFn = std::function<void(const PageDrop&, std::function<void(bool stuck)> report)>;
  void SetPageDropper(PageDropFn fn) { drop_pages_ = std::move(fn); }

  uint16_t port() const { return port_; }
  BlockTable* table() const { return table_.load(); }
  const std::string& volume_name() const { return cfg_name_; }

  // ---- ControlPath ----
  Status Run(std::span<BlockOp> ops) override;
  Status Forward(std::span<const uint64_t> blocks) override;
  void Prefetch(uint64_t first, uint64_t count) override;
  Status Sync() override;
  Status DropAll() override;
  Status AcquireWriterLease(bool shared) override;
  Status ReleaseWriterLease(bool shared) override;
  void AddStats(VolumeStats* s) const override;

  // Moves this node under `address` on purpose: a sync barrier first (so
  // nothing is left that only this node has), then the old link is dropped
  // and the node joins `address`. Fails, staying or ending up wherever it
  // could join, when `address` cannot be joined within io_timeout.
  Status Reparent(const std::string& address);

  // The latest snapshot (traffic and the listening port filled in now).
  TreeStatus status() const;
  TrafficSnapshot traffic() const { return traffic_.Snapshot(); }
  void ResetTraffic() { traffic_.Reset(); }

 private:
  // A caller waiting for local operations (local_calls.cc).
  struct Batch {
    std::mutex mu;
    std::condition_variable cv;
    size_t remaining = 0;
    Status status;            // the first failure
    bool cancelled = false;   // its caller gave up: nothing may be written for it any more
    std::vector<uint8_t*> outs;  // per operation: where a read's bytes go (nullptr: none)
    std::vector<std::pair<size_t, size_t>> ranges;  // per operation: offset and length within the block
    std::vector<uint64_t> ops;   // the engine's operation ids
  };
  using Starter = std::function<uint64_t(Replica&, Time)>;
  // Starts `starts` on the I/O thread and waits for all of them; `outs` and
  // `ranges`, when given, say where each read's bytes go.
  Status RunLocal(std::vector<Starter> starts, std::vector<uint8_t*> outs = {},
                  std::vector<std::pair<size_t, size_t>> ranges = {});
  void Complete(LocalDone& d);

  // tree_node.cc
  void Drain();  // on the I/O thread: carry out what the engine queued
  void Route(Outgoing o);
  void DropPages(const PageDrop& d);
  void RunStore(StoreOp op);
  asio::awaitable<void> AcceptLoop();
  asio::awaitable<void> TickLoop();
  void Publish();
  // Runs a coroutine on the I/O thread; an exception that escapes it is
  // logged (and, for the loops the node lives by, stops it loudly).
  void Spawn(asio::awaitable<void> a, const char* what);

  // parent_link.cc
  asio::awaitable<void> ConnectParent();
  // Dials the parent until `give_up`; an empty optional when it could not,
  // with *why and *code set.
  asio::awaitable<std::optional<tcp::socket>> Dial(const std::string& address,
                                                   std::chrono::steady_clock::time_point give_up, std::string* why,
                                                   Status::Code* code, const char* what = "parent");
  void AttachParent(tcp::socket socket, const std::string& address);
  asio::awaitable<void> Reconnect();
  void FinishJoin();

  // peer_root.cc
  asio::awaitable<void> PeerLoop();
  void AnswerPeer(LinkId link, const std::shared_ptr<Connection>& conn, const Message& m);
  void ApplyRole(Time now);
  // A standby that unmounts tells the active root (which then serves on
  // without a root lease); waits at most a second.
  void TellPeerLeaving();

  static Time Now() { return std::chrono::steady_clock::now(); }

  TreeNodeOptions opts_;
  const std::string cfg_name_;
  std::unique_ptr<BlockStore> store_;
  Replica replica_;
  std::atomic<BlockTable*> table_{nullptr};
  PageDropFn drop_pages_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  tcp::acceptor acceptor_;
  std::thread thread_;
  std::unique_ptr<asio::thread_pool> store_pool_;
  // Writes and syncs run one at a time, in the order the engine asked for
  // them (reads run on the whole pool). The engine may ask for a block's
  // bytes to be written while an older write of it is still under way (two
  // sync barriers' write-backs overlap); run side by side, the older could
  // land last and leave the store stale under a slot marked clean.
  std::optional<asio::strand<asio::thread_pool::executor_type>> store_order_;
  uint16_t port_ = 0;
  std::atomic<bool> stopped_{false};

  // I/O thread only.
  std::shared_ptr<Connection> parent_;
  std::map<LinkId, std::shared_ptr<Connection>> children_;
  // What all child links together may hold queued before they stop reading
  // requests (each child may have 32 MiB of requests out); past it, each
  // child adds at most the one answer that crossed it.
  static constexpr size_t kChildSendBudget = size_t{16} << 20;
  std::shared_ptr<SendBudget> child_budget_ = std::make_shared<SendBudget>(kChildSendBudget);
  LinkId next_link_ = 1;
  std::map<uint64_t, std::pair<std::shared_ptr<Batch>, size_t>> waiting_;  // op -> caller, index
  bool reconnecting_ = false;
  std::string current_parent_;
  std::string preferred_parent_;  // Reparent's target
  std::optional<RootRole> role_;  // with a peer only
  std::shared_ptr<Connection> peer_conn_;  // our asks go here
  std::set<LinkId> peer_links_;   // accepted links a peer asks on
  std::map<LinkId, std::string> child_addresses_;
  uint64_t reparents_ = 0;
  uint64_t requests_served_ = 0, calls_to_parent_ = 0, calls_to_children_ = 0;
  std::string role_text_;
  int64_t root_lease_left_ = -1;

  // Joining at Start.
  std::mutex join_mu_;
  std::condition_variable join_cv_;
  bool join_done_ = false;  // guarded by join_mu_
  Status join_status_;      // guarded by join_mu_
  bool joining_ = false;    // I/O thread: the first join is under way

  std::atomic<uint64_t> local_ops_{0}, local_timeouts_{0};
  std::atomic<uint64_t> store_reads_{0}, store_writes_{0};
  TrafficCounters traffic_;
  mutable std::mutex status_mu_;
  std::shared_ptr<const TreeStatus> status_;  // guarded by status_mu_
};

}  // namespace vshare::net
