#include "core/coherence.h"

#include <doctest/doctest.h>

using namespace vshare;

namespace {
BlockState Root() { return BlockState{Perm::kWrite, 0, false, {}}; }
Transition Req(const BlockState& s, LinkId l, Perm p) { return Step(s, {Event::Kind::kRequest, l, p}); }
}  // namespace

TEST_CASE("readers share; a writer recalls every other copy first") {
  BlockState s = Root();
  s = Req(s, 1, Perm::kRead).next;
  s = Req(s, 2, Perm::kRead).next;
  CHECK(s.grants.size() == 2);

  Transition w = Req(s, 3, Perm::kWrite);
  REQUIRE(w.actions.size() == 3);
  CHECK(w.actions[0] == Action{Action::Kind::kInvalidate, 1, Perm::kNone});
  CHECK(w.actions[1] == Action{Action::Kind::kInvalidate, 2, Perm::kNone});
  CHECK(w.actions[2].kind == Action::Kind::kWait);
  CHECK(w.next == s);  // nothing granted while copies remain

  s = Step(s, {Event::Kind::kInvalidateAck, 1, Perm::kNone}).next;
  s = Step(s, {Event::Kind::kInvalidateAck, 2, Perm::kNone}).next;
  w = Req(s, 3, Perm::kWrite);
  REQUIRE(w.actions.size() == 1);
  CHECK(w.actions[0] == Action{Action::Kind::kGrant, 3, Perm::kWrite});
  CHECK(w.next.GrantOf(3) == Perm::kWrite);
  CHECK(w.next.grants.size() == 1);
}

TEST_CASE("a reader downgrades a writer to READ, not to nothing") {
  BlockState s = Req(Root(), 1, Perm::kWrite).next;
  Transition r = Req(s, 2, Perm::kRead);
  REQUIRE(r.actions.size() == 2);
  CHECK(r.actions[0] == Action{Action::Kind::kInvalidate, 1, Perm::kRead});
  s = Step(s, {Event::Kind::kInvalidateAck, 1, Perm::kRead}).next;
  r = Req(s, 2, Perm::kRead);
  CHECK(r.actions[0].kind == Action::Kind::kGrant);
  CHECK(r.next.GrantOf(1) == Perm::kRead);
  CHECK(r.next.GrantOf(2) == Perm::kRead);
}

TEST_CASE("local access at a node conflicts with a child's WRITE") {
  BlockState s = Req(Root(), 4, Perm::kWrite).next;
  Transition r = Req(s, kLocal, Perm::kRead);
  CHECK(r.actions[0] == Action{Action::Kind::kInvalidate, 4, Perm::kRead});
  Transition w = Req(s, kLocal, Perm::kWrite);
  CHECK(w.actions[0] == Action{Action::Kind::kInvalidate, 4, Perm::kNone});
}

TEST_CASE("frozen blocks are refused; a write bumps the version") {
  BlockState s = Root();
  s.frozen = true;
  CHECK(Req(s, 1, Perm::kRead).actions[0].kind == Action::Kind::kRefuse);
  s.frozen = false;
  s = Step(s, {Event::Kind::kWriteDone, kLocal, Perm::kWrite}).next;
  CHECK(s.version == 1);
}

TEST_CASE("an ack never raises a grant") {
  BlockState s = Req(Root(), 1, Perm::kRead).next;
  s = Step(s, {Event::Kind::kInvalidateAck, 1, Perm::kWrite}).next;
  CHECK(s.GrantOf(1) == Perm::kRead);
}
