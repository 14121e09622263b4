#include "core/parent_lease.h"

#include <doctest/doctest.h>

using namespace vshare;
using namespace std::chrono_literals;

namespace {
// One HEARTBEAT sent at `t` and lost a period later.
bool LoseOne(ParentLease& p, Time& t) {
  p.HeartbeatSent(t, 100ms);
  t += 100ms;
  return p.HeartbeatAnswered(false, true, t);
}
}  // namespace

TEST_CASE("parent lease: three HEARTBEATs lost in silence mean the parent failed") {
  ParentLease p;
  Time t{};
  CHECK_FALSE(LoseOne(p, t));
  CHECK_FALSE(LoseOne(p, t));
  CHECK(LoseOne(p, t));
}

TEST_CASE("parent lease: HEARTBEATs lost while data comes from the parent are no failure") {
  ParentLease p;
  Time t{};
  for (int i = 0; i < 6; ++i) {
    p.Heard(t + 50ms);  // an answer to an earlier request, queued ahead of the HEARTBEAT's
    CHECK_FALSE(LoseOne(p, t));
  }
  // Once it is silent for a period, the losses counted so far stand.
  CHECK(LoseOne(p, t));
}

TEST_CASE("parent lease: a parent that goes silent is found failed three periods later, as before") {
  ParentLease p;
  Time t{};
  p.Heard(t);  // the last word from it
  CHECK_FALSE(LoseOne(p, t));
  CHECK_FALSE(LoseOne(p, t));
  CHECK(LoseOne(p, t));  // at 300 ms
  CHECK(t - Time{} == 300ms);
}

TEST_CASE("parent lease: an answered HEARTBEAT starts the count again") {
  ParentLease p;
  Time t{};
  CHECK_FALSE(LoseOne(p, t));
  CHECK_FALSE(LoseOne(p, t));
  p.HeartbeatSent(t, 100ms);
  CHECK_FALSE(p.HeartbeatAnswered(true, false, t));
  CHECK_FALSE(LoseOne(p, t));
  CHECK_FALSE(LoseOne(p, t));
  CHECK(LoseOne(p, t));
}
