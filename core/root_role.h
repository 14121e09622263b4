// RootRole: which of two roots of one volume may serve it (doc/failover.md,
// section 4). Pure logic: time arrives with each call; the network side
// (net/tree_node) carries the asks and answers.
//
// Two roots export the same image and name each other with --peer. The one
// started without --standby asks its peer for a root lease every quarter
// lease; it serves only while it holds one. The standby answers, and takes
// the volume over only after it has answered an ask and then heard nothing
// for that lease plus the margin: by then the other root has surely stopped
// (its lease ran from when its ask left, before the standby answered it).
//
//   kWaiting  started without --standby, no answer yet: asks, serves nothing.
//   kActive   serves: under a lease once a standby answered (peered), or
//             without one after a takeover, until a standby answers.
//   kStandby  answers asks, serves nothing; takes over as described.
//
// An active root told by its peer that the peer is active stops at once and
// becomes a standby: that is how a root that comes back after losing its
// role learns it, before it serves anything. Two roots started without
// --standby both wait, and two standbys never take over: both are safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>

namespace vshare {

class RootRole {
 public:
  using Time = std::chrono::steady_clock::time_point;
  enum class State { kWaiting, kStandby, kActive };
  // What the peer said of itself.
  enum class PeerState { kWaiting, kStandby, kActive };
  struct Answer {
    PeerState state = PeerState::kWaiting;
    uint32_t lease_ms = 0;  // granted with kStandby
  };

  RootRole(bool standby, uint32_t lease_ms, uint32_t margin_ms);

  // Whether this node sends asks to its peer now (kWaiting and kActive).
  bool Asks() const { return state_ != State::kStandby; }
  // The answer to a peer's ask that arrived at `now`.
  Answer OnAsk(Time now);
  // The answer to our ask sent at `sent`.
  void OnAnswer(Time sent, const Answer& a);
  // The standby said it is leaving on purpose (its unmount): an active root
  // serves on without a root lease until a standby answers again. Safe
  // because a leaving standby never takes over (Leave).
  void OnPeerLeft();
  // This node is stopping: as a standby it will never take over now.
  // True when it was a standby that had been asked, so the active root
  // should be told (OnPeerLeft there).
  bool Leave();
  // Time passes: a standby may take over. True once, when it does; the
  // caller then rebuilds the grants from the children (Replica::TakeOver).
  bool Tick(Time now);

  // Until when this node may serve (Time::max(): without limit; Time{}:
  // not at all).
  Time ServingUntil() const;
  State state() const { return state_; }
  bool peered() const { return peered_; }
  // One word or phrase for status and logs.
  std::string Describe(Time now) const;

 private:
  State state_;
  uint32_t lease_ms_, margin_ms_;
  bool peered_ = false;     // active: a standby's lease bounds us
  Time lease_until_{};      // active and peered: our root lease
  bool contacted_ = false;  // standby: an active peer has asked
  Time granted_until_{};    // standby: the latest lease we granted, by our clock
};

const char* RootRoleName(RootRole::State s);

}  // namespace vshare
