// Node: everything one vshare process serves — its role and its volumes —
// passed as a context object to the adapters (FUSE, and later the network).
//
// Volumes are added before the node starts serving and never removed, so
// lookups need no lock. The last-error string is thread-safe.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/traffic.h"
#include "core/volume_io.h"

namespace vshare {

// Where a node sits in the tree, for stats and status.
struct TreeStats {
  std::string parent;      // HOST:PORT; empty on the root
  uint16_t listen_port = 0;
  uint64_t children = 0;
  uint64_t requests_served = 0;
  uint64_t calls_to_parent = 0;
  uint64_t calls_to_children = 0;
  uint64_t local_timeouts = 0;
  std::vector<std::string> child_addresses;  // where each child connects from
  std::vector<std::string> upstream;  // the parent's ancestors, nearest first: where to go if it fails
  std::string writer_lease;  // held by this node's open files: "none", "shared" or "exclusive"
  bool lease_valid = true;          // the global lease from the parent (always on the root)
  int64_t lease_ms_left = 0;
  int64_t ms_since_renewal = -1;    // -1: never renewed (the root)
  uint64_t frozen_blocks = 0;       // blocks a failed child's grants still hold
  uint64_t failed_children = 0;
  uint64_t rejoins = 0;
  uint64_t reparents = 0;        // joins below a different parent than before
  uint64_t recovered = 0;
  uint64_t recovery_lost = 0;
  uint64_t claims_served = 0;
  uint64_t revalidated = 0;
  // A root with a peer root: "active", "standby", ... (empty otherwise),
  // and its root lease's time left (-1: unbounded).
  std::string root_role;
  std::string root_peer;
  int64_t root_lease_ms_left = -1;
  TrafficSnapshot traffic;
};

class Node {
 public:
  explicit Node(std::string role) : role_(std::move(role)), started_(std::chrono::steady_clock::now()) {}

  void AddVolume(std::unique_ptr<VolumeIo> v) { volumes_.push_back(std::move(v)); }
  const std::vector<std::unique_ptr<VolumeIo>>& volumes() const { return volumes_; }
  VolumeIo* FindVolume(const std::string& name) const;

  const std::string& role() const { return role_; }
  void set_write_mode(std::string m) { write_mode_ = std::move(m); }
  const std::string& write_mode() const { return write_mode_; }
  // Set once, before serving, on nodes in a tree: where the stats come
  // from, and how reset-stats clears the counters among them.
  void SetTreeStats(std::function<TreeStats()> f, std::function<void()> reset) {
    tree_stats_ = std::move(f);
    tree_reset_ = std::move(reset);
  }
  std::optional<TreeStats> tree_stats() const {
    return tree_stats_ ? std::optional<TreeStats>(tree_stats_()) : std::nullopt;
  }
  double uptime_seconds() const;
  // Set once, before serving, on a child: moves it under another parent.
  void SetReparent(std::function<Status(const std::string&)> f) { reparent_ = std::move(f); }
  Status Reparent(const std::string& address) {
    return reparent_ ? reparent_(address) : Status::InvalidArgument("a root has no parent to change");
  }

  // Flushes every volume; returns the first failure but tries them all.
  Status FlushAll();
  Status DropCacheAll();
  void ResetStats();
  uint64_t DirtyBlocks() const;

  // Records a failure for stats `last_error` (and logs it).
  void SetLastError(const std::string& what);
  std::string last_error() const;

 private:
  const std::string role_;
  std::string write_mode_ = "async";
  const std::chrono::steady_clock::time_point started_;
  std::vector<std::unique_ptr<VolumeIo>> volumes_;
  std::function<TreeStats()> tree_stats_;
  std::function<void()> tree_reset_;
  std::function<Status(const std::string&)> reparent_;
  mutable std::mutex mu_;
  std::string last_error_;  // guarded by mu_
};

}  // namespace vshare
