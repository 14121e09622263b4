// RootRole: the two roots of a volume never serve at once, whatever order
// asks, answers and silences come in (doc/failover.md, section 4).
#include "core/root_role.h"

#include <doctest/doctest.h>

using namespace vshare;
using namespace std::chrono_literals;
using Time = RootRole::Time;
using State = RootRole::State;
using PeerState = RootRole::PeerState;

namespace {

constexpr uint32_t kLease = 2000, kMargin = 200;
const Time t0 = Time{} + 1000s;

// An ask from `asker` sent at `sent`, answered by `answerer` at `at`, the
// answer arriving back at once.
void Exchange(RootRole& asker, RootRole& answerer, Time sent, Time at) {
  REQUIRE(asker.Asks());
  asker.OnAnswer(sent, answerer.OnAsk(at));
}

bool Serving(const RootRole& r, Time now) { return now < r.ServingUntil(); }

}  // namespace

TEST_CASE("root role: the active root serves only under the standby's lease") {
  RootRole a(/*standby=*/false, kLease, kMargin), s(/*standby=*/true, kLease, kMargin);
  CHECK(a.state() == State::kWaiting);
  CHECK_FALSE(Serving(a, t0));  // nothing before the standby answers
  CHECK_FALSE(s.Asks());
  Exchange(a, s, t0, t0 + 10ms);
  CHECK(a.state() == State::kActive);
  CHECK(a.peered());
  CHECK(Serving(a, t0 + 1999ms));
  CHECK_FALSE(Serving(a, t0 + 2000ms));  // counted from when the ask left
  // Renewed each quarter lease, the lease goes on; the standby stays put.
  for (int i = 1; i <= 8; ++i) {
    const Time t = t0 + i * 500ms;
    Exchange(a, s, t, t + 10ms);
    CHECK_FALSE(s.Tick(t + 20ms));
    CHECK(Serving(a, t + 20ms));
  }
}

TEST_CASE("root role: the standby takes over only after the active root's lease is surely over") {
  RootRole a(false, kLease, kMargin), s(true, kLease, kMargin);
  Exchange(a, s, t0, t0 + 10ms);
  const Time last_sent = t0 + 500ms;
  Exchange(a, s, last_sent, last_sent + 10ms);  // then the active root goes silent
  const Time a_stops = a.ServingUntil();
  CHECK(a_stops == last_sent + 2000ms);
  for (Time t = last_sent; t <= last_sent + 10ms + 2000ms + 200ms; t += 50ms) {
    CHECK_FALSE(s.Tick(t));
    CHECK(s.state() == State::kStandby);
  }
  const Time over = last_sent + 10ms + 2000ms + 250ms;
  CHECK(s.Tick(over));
  CHECK(s.state() == State::kActive);
  CHECK(over > a_stops);  // never both
  CHECK(Serving(s, over));
  CHECK(s.ServingUntil() == Time::max());  // no standby left to lean on
  CHECK_FALSE(Serving(a, over));
  // The old root's next ask is answered "active": it steps down for good.
  Exchange(a, s, over + 100ms, over + 110ms);
  CHECK(a.state() == State::kStandby);
  CHECK_FALSE(Serving(a, over + 200ms));
  CHECK_FALSE(a.Asks());
  // It does not take over by itself: the new active root never asked it.
  CHECK_FALSE(a.Tick(over + 100s));
  // Once the new root asks and it answers, the new root is bounded by it.
  Exchange(s, a, over + 101s, over + 101s);
  CHECK(s.peered());
  CHECK(s.ServingUntil() == over + 101s + 2000ms);
}

TEST_CASE("root role: a standby that leaves on purpose lets the active root serve on alone, and never takes over") {
  RootRole a(false, kLease, kMargin), s(true, kLease, kMargin);
  Exchange(a, s, t0, t0);
  CHECK(s.Leave());  // it had been asked: the active root is told
  a.OnPeerLeft();
  CHECK(a.ServingUntil() == Time::max());
  CHECK_FALSE(s.Tick(t0 + 1h));  // silent or not, a leaving standby stays put
  CHECK_FALSE(s.Leave());        // nothing more to tell
  // A standby that answers later bounds the active root again.
  RootRole s2(true, kLease, kMargin);
  Exchange(a, s2, t0 + 10s, t0 + 10s);
  CHECK(a.ServingUntil() == t0 + 12s);
  // A waiting root is not made active by a departure.
  RootRole w(false, kLease, kMargin);
  w.OnPeerLeft();
  CHECK_FALSE(Serving(w, t0));
}

TEST_CASE("root role: a standby that was never asked never takes over") {
  RootRole s(true, kLease, kMargin);
  CHECK_FALSE(s.Tick(t0 + 1h));
  CHECK_FALSE(Serving(s, t0 + 1h));
  CHECK(s.Describe(t0).find("has not called") != std::string::npos);
}

TEST_CASE("root role: a root that comes back after losing its role serves nothing") {
  RootRole s(true, kLease, kMargin);
  RootRole a(false, kLease, kMargin);
  Exchange(a, s, t0, t0);
  REQUIRE(s.Tick(t0 + 10s));  // a died; s took over
  RootRole back(false, kLease, kMargin);  // a restarted, as it was first started
  CHECK_FALSE(Serving(back, t0 + 11s));
  Exchange(back, s, t0 + 11s, t0 + 11s);
  CHECK(back.state() == State::kStandby);
  CHECK_FALSE(Serving(back, t0 + 12s));
}

TEST_CASE("root role: two roots without --standby both wait; an answer to a stale ask changes nothing") {
  RootRole a(false, kLease, kMargin), b(false, kLease, kMargin);
  Exchange(a, b, t0, t0);
  Exchange(b, a, t0, t0);
  CHECK(a.state() == State::kWaiting);
  CHECK(b.state() == State::kWaiting);
  CHECK_FALSE(Serving(a, t0 + 1s));
  CHECK_FALSE(Serving(b, t0 + 1s));
  // A standby's grant that arrives after we stepped down is ignored.
  RootRole s(true, kLease, kMargin);
  RootRole::Answer active{PeerState::kActive, 0};
  a.OnAnswer(t0, active);
  REQUIRE(a.state() == State::kStandby);
  a.OnAnswer(t0, RootRole::Answer{PeerState::kStandby, kLease});
  CHECK(a.state() == State::kStandby);
  CHECK_FALSE(Serving(a, t0 + 1ms));
}
