// ChildLeases: a parent's view of its children's leases and failures.
//
// A live child's lease ends when the HB_TTL last given to it runs out
// (counted from when it was given: the child counts from when it asked,
// which was earlier). A child whose lease has lapsed (plus the margin), whose
// link closed without DISCONNECT, or that failed an INVALIDATE, is declared
// failed: its grants stand, blocking whatever conflicts with them, until its
// lease is surely over and then a grace period more, in which its children
// may claim back what they wrote (RECOVER). See doc/failover.md.
//
// Pure state: the engine decides, logs and releases.
#pragma once

#include <chrono>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/coherence.h"
#include "core/effects.h"

namespace vshare {

class ChildLeases {
 public:
  // A lease of up to `end` was just given to `child`.
  void Extend(LinkId child, Time end) {
    Time& e = lease_end_[child];
    e = std::max(e, end);
  }
  const Time* LeaseEnd(LinkId child) const {
    auto it = lease_end_.find(child);
    return it == lease_end_.end() ? nullptr : &it->second;
  }
  void Forget(LinkId child) { lease_end_.erase(child); }
  // Children whose lease, plus `margin`, has lapsed at `now`.
  std::vector<LinkId> Lapsed(Time now, std::chrono::milliseconds margin) const {
    std::vector<LinkId> out;
    for (const auto& [child, end] : lease_end_)
      if (now > end + margin) out.push_back(child);
    return out;
  }
  std::vector<LinkId> Live() const {
    std::vector<LinkId> out;
    for (const auto& [child, end] : lease_end_) out.push_back(child);
    return out;
  }

  // Failed children: their grants stand until `until`.
  void Fail(LinkId child, Time until) {
    failed_[child] = until;
    ++failed_total_;
  }
  void CountFailure() { ++failed_total_; }
  bool IsFailed(LinkId child) const { return failed_.count(child) > 0; }
  bool any_failed() const { return !failed_.empty(); }
  const std::unordered_map<LinkId, Time>& failed() const { return failed_; }
  // Failed children whose grants may go at `now`; they are forgotten here.
  std::vector<LinkId> Over(Time now) {
    std::vector<LinkId> out;
    for (const auto& [child, until] : failed_)
      if (now >= until) out.push_back(child);
    for (LinkId c : out) failed_.erase(c);
    return out;
  }
  void ForgetFailed(LinkId child) { failed_.erase(child); }
  uint64_t failed_total() const { return failed_total_; }

  // A child that said DISCONNECT: its link's close is no failure.
  void Departed(LinkId child) { departed_.insert(child); }
  bool TakeDeparted(LinkId child) { return departed_.erase(child) > 0; }

  void Clear() {
    lease_end_.clear();
    failed_.clear();
  }

 private:
  std::unordered_map<LinkId, Time> lease_end_;
  std::unordered_map<LinkId, Time> failed_;
  std::unordered_set<LinkId> departed_;
  uint64_t failed_total_ = 0;
};

}  // namespace vshare
