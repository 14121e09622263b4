// ParentLease: a child's global lease from its parent (HB_TTL), and the
// HEARTBEATs that renew it.
//
// Every answer from the parent that carries HB_TTL renews the lease to
// (when the request left + HB_TTL): the parent's record of the lease cannot
// end sooner. Past the lease nothing from the parent may be used. A
// HEARTBEAT goes out once a period has passed since the last one; three
// unanswered in a row mean the parent has failed, unless something else
// came from it within the last period: a busy parent's answer can wait
// behind megabytes of data on the link, and the data arriving shows the
// parent is there. (A parent that goes silent is still found failed three
// periods after it did, as before: doc/failover.md.)
//
// Pure state: the engine sends the messages and reads the clock.
#pragma once

#include <chrono>
#include <cstdint>
#include <utility>

#include "core/effects.h"

namespace vshare {

class ParentLease {
 public:
  bool Valid(Time now) const { return now < until_; }
  Time until() const { return until_; }
  void Renewed(Time sent, uint32_t hb_ttl_ms) {
    until_ = std::max(until_, sent + std::chrono::milliseconds(hb_ttl_ms));
    last_renewal_ = std::max(last_renewal_, sent);
    ever_renewed_ = true;
  }

  // HEARTBEATs.
  bool HeartbeatDue(Time now) const { return !in_flight_ && now >= next_; }
  bool heartbeat_in_flight() const { return in_flight_; }
  void HeartbeatSent(Time now, std::chrono::milliseconds period) {
    in_flight_ = true;
    next_ = now + period;
    period_ = period;
  }
  // Something came from the parent (any answer or request of its own).
  void Heard(Time now) { last_heard_ = std::max(last_heard_, now); }
  // The HEARTBEAT's answer: renewed (an OK with HB_TTL), refused by the
  // parent, or lost (no answer, link gone), at `now`. True when the parent
  // has failed: a third loss in a row (or later) with nothing heard from
  // it for a period.
  bool HeartbeatAnswered(bool renewed, bool lost, Time now) {
    in_flight_ = false;
    if (renewed) failures_ = 0;
    if (!lost || ++failures_ < 3 || now - last_heard_ < period_) return false;
    failures_ = 0;
    return true;
  }
  // Joined (or joined again): the next HEARTBEAT is a period away.
  void Joined(Time now, std::chrono::milliseconds period) {
    failures_ = 0;
    next_ = now + period;
  }
  void LinkLost() { in_flight_ = false; }

  int64_t ms_left(Time now) const {
    return until_ > now ? std::chrono::duration_cast<std::chrono::milliseconds>(until_ - now).count() : 0;
  }
  // Since the last renewal was sent; -1 when there was none.
  int64_t ms_since_renewal(Time now) const {
    return ever_renewed_ ? std::chrono::duration_cast<std::chrono::milliseconds>(now - last_renewal_).count() : -1;
  }

 private:
  Time until_{};
  Time next_{};
  Time last_renewal_{};
  Time last_heard_{};
  std::chrono::milliseconds period_{0};
  bool in_flight_ = false;
  bool ever_renewed_ = false;
  int failures_ = 0;
};

}  // namespace vshare
