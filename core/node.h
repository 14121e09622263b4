// Node: everything one vshare process serves — its role and its volumes —
// passed as a context object to the adapters (FUSE, and later the network).
//
// Volumes are added before the node starts serving and never removed, so
// lookups need no lock. The last-error string is thread-safe.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/volume.h"

namespace vshare {

class Node {
 public:
  explicit Node(std::string role) : role_(std::move(role)), started_(std::chrono::steady_clock::now()) {}

  void AddVolume(std::unique_ptr<Volume> v) { volumes_.push_back(std::move(v)); }
  const std::vector<std::unique_ptr<Volume>>& volumes() const { return volumes_; }
  Volume* FindVolume(const std::string& name) const;

  const std::string& role() const { return role_; }
  double uptime_seconds() const;

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
  const std::chrono::steady_clock::time_point started_;
  std::vector<std::unique_ptr<Volume>> volumes_;
  mutable std::mutex mu_;
  std::string last_error_;  // guarded by mu_
};

}  // namespace vshare
