// TreeNode: one node of the tree on the network. It runs a Replica on its
// own I/O thread, accepts children on a listening socket, keeps one
// connection to its parent, and carries the Replica's messages over them
// (net/connection.h). Local reads, writes and flushes may be called from
// any thread; each waits at most io_timeout and then fails with kTimedOut,
// so a caller is never left hanging.
//
// A timer ticks the Replica every 50 ms (heartbeats, failed children).
// When the link to the parent closes, the node dials the parent again until
// it is back and joins anew (Replica::Rejoin); children the Replica declares
// failed have their links closed.
//
// A root given a peer (another root of the same image) runs a RootRole:
// it asks the peer for a root lease, or answers the peer's asks as its
// standby, and the Replica serves only while the role allows.
//
// What it does not do yet: several volumes per node, and a bounded cache
// below a proxy (copies are kept in the BlockData given to it).
#pragma once

#include <atomic>
#include <boost/asio.hpp>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "core/replica.h"
#include "core/root_role.h"
#include "core/traffic.h"
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
};

struct TreeNodeCounters {
  uint64_t children = 0;          // connected now
  uint64_t requests_served = 0;   // IO_REQUESTs from children
  uint64_t calls_to_parent = 0;
  uint64_t calls_to_children = 0;  // INVALIDATEs
  uint64_t local_ops = 0;
  uint64_t local_timeouts = 0;
};

class TreeNode {
 public:
  // `data` holds this node's copies (the root's: its store) and must outlive
  // the node. cfg.is_root is taken from opts.parent being empty.
  TreeNode(TreeNodeOptions opts, ReplicaConfig cfg, BlockData* data);
  ~TreeNode();
  TreeNode(const TreeNode&) = delete;
  TreeNode& operator=(const TreeNode&) = delete;

  // Binds the listener, starts the I/O thread and, below the root, connects
  // to the parent and joins the volume (CONNECT). Fails with a reason when
  // the address is taken, the parent cannot be reached in io_timeout, or it
  // refuses the volume.
  Status Start();
  // Closes every connection and stops the thread. Pending local operations
  // fail. Idempotent.
  void Stop();

  uint16_t port() const { return port_; }
  uint64_t volume_size() const;
  uint32_t block_size() const;

  Status Read(uint64_t block, std::vector<uint8_t>* out);
  Status Write(uint64_t block, size_t offset, std::span<const uint8_t> data);
  // Sends the block's data (if this node holds it dirty) to the root,
  // keeping a READ copy.
  Status Flush(uint64_t block);
  // A sync barrier (Replica::SyncLocal): returns once everything written
  // through this node, and whatever recalls moved into its ancestors, is
  // durable in the root's store.
  Status Sync();

  // The writer lease (Replica::AcquireLeaseLocal): kBusy when another node
  // holds an incompatible one. Release always succeeds here.
  Status AcquireLease(bool shared);
  Status ReleaseLease(bool shared);
  // What this node's own opens hold: kNone, kRead (shared), kWrite.
  Perm lease() const { return static_cast<Perm>(lease_.load()); }

  // One local operation of a batch: a read of `block` (data empty), or a
  // write of `data` at `offset` within it.
  struct BlockOp {
    uint64_t block = 0;
    bool write = false;
    size_t offset = 0;
    std::vector<uint8_t> data;  // written, or (for a read) filled in
  };
  // Runs the operations concurrently (each block's in order); the first
  // failure is returned. Bounded by io_timeout as a whole. With
  // `forward_writes` (semi-sync), each written block is then FORWARDed to
  // the parent before the batch completes.
  Status RunBatch(std::vector<BlockOp>* ops, bool forward_writes = false);
  // Gives back every block held here (Replica::DropAllLocal).
  Status DropAll();

  TreeNodeCounters counters() const;
  TrafficSnapshot traffic() const { return traffic_.Snapshot(); }
  // As of the last tick (at most 50 ms old).
  LeaseInfo lease_info() const;
  void ResetTraffic() { traffic_.Reset(); }
  // Where each connected child connects from (HOST:PORT), for status.
  std::vector<std::string> child_addresses() const;
  // The parent this node is joined to now (it changes on reparenting), and
  // where it would turn if that one failed.
  std::string parent_address() const;
  std::vector<std::string> upstream() const;
  uint64_t reparents() const { return reparents_; }
  // With a peer root: this root's role ("active", "standby", ...), and how
  // long its root lease has left (-1: none bounds it). Empty without one.
  std::string root_role() const;
  int64_t root_lease_ms_left() const;
  // Moves this node under `address` on purpose: a sync barrier first (so
  // nothing is left that only this node has), then the old link is dropped
  // and the node joins `address`. Fails, staying or ending up wherever it
  // could join, when `address` cannot be joined within io_timeout.
  Status Reparent(const std::string& address);

 private:
  struct Waiter {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    size_t remaining = 1;  // operations still to complete
    Status status;         // the first failure
    std::vector<std::vector<uint8_t>> data;  // per operation
  };
  using Starter = std::function<uint64_t(Replica&, Time)>;

  Status RunLocal(std::vector<Starter> starts, std::vector<std::vector<uint8_t>>* outs);
  void Drain();  // on the I/O thread: carry out what the Replica queued
  void Route(Outgoing o);
  asio::awaitable<void> AcceptLoop();
  asio::awaitable<void> ConnectParent(std::shared_ptr<Waiter> joined);
  // Dials the parent until `give_up` (retrying every 200 ms); an empty
  // optional when it could not, with *why set.
  asio::awaitable<std::optional<tcp::socket>> DialParent(const std::string& address,
                                                         std::chrono::steady_clock::time_point give_up,
                                                         std::string* why, const char* what = "parent");
  void AttachParent(tcp::socket socket, const std::string& address);
  // Where to try next after losing the parent: a requested one first, then
  // the lost parent's ancestors, the fallbacks, and the lost parent itself.
  std::vector<std::string> Candidates() const;
  // After the parent link closed: dial again until joined (or stopped).
  asio::awaitable<void> Reconnect();
  asio::awaitable<void> TickLoop();
  // The root with a peer: asks it for the root lease (RootRole::Asks).
  asio::awaitable<void> PeerLoop();
  // A peer root's ask (a CONNECT with IS_ROOT) on link `link`.
  void AnswerPeer(LinkId link, const std::shared_ptr<Connection>& conn, const Message& m);
  // After the role may have changed: the Replica's authority follows it.
  void ApplyRole(Time now);
  static Time Now() { return std::chrono::steady_clock::now(); }

  TreeNodeOptions opts_;
  BlockData* data_;
  Replica replica_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  tcp::acceptor acceptor_;
  std::thread thread_;
  uint16_t port_ = 0;
  std::atomic<bool> stopped_{false};
  std::atomic<uint8_t> lease_{0};  // replica_.lease(), as of the last Drain
  std::atomic<bool> replica_connected_{false};  // likewise
  std::atomic<uint64_t> reparents_{0};

  // I/O thread only.
  std::shared_ptr<Connection> parent_;
  std::map<LinkId, std::shared_ptr<Connection>> children_;
  LinkId next_link_ = 1;
  std::map<uint64_t, std::pair<std::shared_ptr<Waiter>, size_t>> waiters_;  // op -> waiter, index
  std::shared_ptr<Waiter> join_waiter_;
  bool reconnecting_ = false;
  std::string current_parent_;    // guarded by counters_mu_ (written on the I/O thread)
  std::vector<std::string> upstream_copy_;  // guarded by counters_mu_
  std::string preferred_parent_;  // I/O thread: Reparent's target
  std::optional<RootRole> role_;  // I/O thread; with a peer only
  std::shared_ptr<Connection> peer_conn_;  // I/O thread: our asks go here
  std::set<LinkId> peer_links_;   // I/O thread: accepted links a peer asks on
  std::string role_copy_;         // guarded by counters_mu_
  int64_t root_lease_left_ = -1;  // guarded by counters_mu_
  boost::system::error_code ignored_ec_;

  mutable std::mutex counters_mu_;
  TreeNodeCounters counters_;  // guarded by counters_mu_
  std::map<LinkId, std::string> child_addresses_;  // guarded by counters_mu_
  TrafficCounters traffic_;
  LeaseInfo lease_info_;  // guarded by counters_mu_
};

}  // namespace vshare::net
