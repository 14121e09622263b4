#include "core/root_role.h"

#include <algorithm>
#include <utility>

#include "core/log.h"

namespace vshare {

namespace {

int64_t MsBetween(RootRole::Time from, RootRole::Time to) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(to - from).count();
}

}  // namespace

const char* RootRoleName(RootRole::State s) {
  switch (s) {
    case RootRole::State::kWaiting: return "waiting";
    case RootRole::State::kStandby: return "standby";
    case RootRole::State::kActive: return "active";
  }
  return "?";
}

RootRole::RootRole(bool standby, uint32_t lease_ms, uint32_t margin_ms)
    : state_(standby ? State::kStandby : State::kWaiting), lease_ms_(lease_ms), margin_ms_(margin_ms) {}

RootRole::Answer RootRole::OnAsk(Time now) {
  Answer a;
  switch (state_) {
    case State::kWaiting:
      a.state = PeerState::kWaiting;
      break;
    case State::kActive:
      a.state = PeerState::kActive;
      break;
    case State::kStandby:
      // The asker counts the lease from when its ask left, which was before
      // now: our record of it ends no sooner than its own.
      a.state = PeerState::kStandby;
      a.lease_ms = lease_ms_;
      contacted_ = true;
      granted_until_ = std::max(granted_until_, now + std::chrono::milliseconds(lease_ms_));
      break;
  }
  return a;
}

void RootRole::OnAnswer(Time sent, const Answer& a) {
  if (state_ == State::kStandby) return;  // an answer to an ask made before we stepped down
  switch (a.state) {
    case PeerState::kActive:
      // The peer holds the volume: we may not. Whatever lease we had is void
      // (the peer took over, so it had lapsed anyway).
      LogWarning(std::string("root peer is active: this root ") +
                 (state_ == State::kActive ? "steps down" : "stays") + " as the standby and serves nothing");
      state_ = State::kStandby;
      peered_ = false;
      // It serves without a lease until it asks us and we answer: only
      // then may its silence mean it stopped.
      contacted_ = false;
      return;
    case PeerState::kWaiting:
      return;  // neither of us is the standby: nothing to lean on
    case PeerState::kStandby: {
      const Time until = sent + std::chrono::milliseconds(a.lease_ms);
      if (state_ == State::kWaiting) {
        LogInfo("root peer is a standby and granted a lease: this root is active");
        state_ = State::kActive;
      } else if (!peered_) {
        LogInfo("a standby answered: this root now serves under its lease");
      }
      peered_ = true;
      lease_until_ = std::max(lease_until_, until);
      return;
    }
  }
}

void RootRole::OnPeerLeft() {
  if (state_ != State::kActive || !peered_) return;
  LogWarning("the standby root left on purpose: this root serves on without a root lease until a standby answers");
  peered_ = false;
}

bool RootRole::Leave() {
  const bool tell = state_ == State::kStandby && contacted_;
  if (state_ == State::kStandby) contacted_ = false;
  return tell;
}

bool RootRole::Tick(Time now) {
  if (state_ != State::kStandby || !contacted_) return false;
  if (now <= granted_until_ + std::chrono::milliseconds(margin_ms_)) return false;
  LogWarning("root peer silent for " + std::to_string(MsBetween(granted_until_, now) + lease_ms_) +
             " ms, longer than the lease it held: this root takes the volume over");
  state_ = State::kActive;
  peered_ = false;  // until the other root answers as a standby
  contacted_ = false;
  return true;
}

RootRole::Time RootRole::ServingUntil() const {
  if (state_ != State::kActive) return Time{};
  return peered_ ? lease_until_ : Time::max();
}

std::string RootRole::Describe(Time now) const {
  switch (state_) {
    case State::kWaiting:
      return "waiting for its peer";
    case State::kStandby:
      return contacted_ ? "standby" : "standby (the active root has not called)";
    case State::kActive:
      if (!peered_) return "active (no standby)";
      if (now >= lease_until_) return "active, root lease lapsed: serving nothing";
      return "active";
  }
  return "?";
}

}  // namespace vshare
