// Node: everything one vshare process serves (its role and its volumes),
// passed as a context object to the local interface (FUSE, the control file).
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

#include "core/tree_status.h"
#include "core/volume_io.h"

namespace vshare {

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
  void SetTreeStats(std::function<TreeStatus()> f, std::function<void()> reset) {
    tree_stats_ = std::move(f);
    tree_reset_ = std::move(reset);
  }
  std::optional<TreeStatus> tree_stats() const {
    return tree_stats_ ? std::optional<TreeStatus>(tree_stats_()) : std::nullopt;
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
  std::function<TreeStatus()> tree_stats_;
  std::function<void()> tree_reset_;
  std::function<Status(const std::string&)> reparent_;
  mutable std::mutex mu_;
  std::string last_error_;  // guarded by mu_
};

}  // namespace vshare
