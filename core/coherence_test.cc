#include "core/coherence.h"

#include <doctest/doctest.h>

using namespace vshare;

namespace {
BlockState Root() { return BlockState{Perm::kWrite, 0, 0, false}; }
Transition Req(const BlockState& s, ChildIndex c, Perm p) { return Step(s, {Event::Kind::kRequest, c, p}); }
}  // namespace

TEST_CASE("readers share; a writer recalls every other copy first") {
  BlockState s = Root();
  s = Req(s, 1, Perm::kRead).next;
  s = Req(s, 2, Perm::kRead).next;
  CHECK(s.HolderCount() == 2);

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
  CHECK(w.next.HolderCount() == 1);
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
  CHECK_FALSE(r.next.child_writes);
}

TEST_CASE("local access at a node conflicts with a child's WRITE") {
  BlockState s = Req(Root(), 4, Perm::kWrite).next;
  Transition r = Req(s, kLocalIndex, Perm::kRead);
  CHECK(r.actions[0] == Action{Action::Kind::kInvalidate, 4, Perm::kRead});
  Transition w = Req(s, kLocalIndex, Perm::kWrite);
  CHECK(w.actions[0] == Action{Action::Kind::kInvalidate, 4, Perm::kNone});
  // Local access is never recorded as a grant.
  CHECK(Req(Root(), kLocalIndex, Perm::kWrite).next == Root());
}

TEST_CASE("without the permission, the parent is asked first") {
  BlockState s;  // held NONE
  CHECK(Req(s, 1, Perm::kRead).actions[0] == Action{Action::Kind::kAskParent, 1, Perm::kRead});
  s = Step(s, {Event::Kind::kParentGrant, kLocalIndex, Perm::kRead}).next;
  CHECK(s.held == Perm::kRead);
  CHECK(Req(s, 1, Perm::kWrite).actions[0].kind == Action::Kind::kAskParent);
  CHECK(Req(s, 1, Perm::kRead).actions[0].kind == Action::Kind::kGrant);
}

TEST_CASE("an ack never raises a grant; a writer asking to read stays the writer") {
  BlockState s = Req(Root(), 1, Perm::kRead).next;
  s = Step(s, {Event::Kind::kInvalidateAck, 1, Perm::kWrite}).next;
  CHECK(s.GrantOf(1) == Perm::kRead);
  s = Req(Root(), 5, Perm::kWrite).next;
  s = Req(s, 5, Perm::kRead).next;
  CHECK(s.GrantOf(5) == Perm::kWrite);
  s = Step(s, {Event::Kind::kRelease, 5, Perm::kNone}).next;
  CHECK(s.holders == 0);
  CHECK_FALSE(s.child_writes);
}

TEST_CASE("a claim (RECOVER) records the claimant as a writer beside a failed one") {
  BlockState s = Req(Root(), 2, Perm::kWrite).next;  // 2 has failed, its grant stands
  s = Step(s, {Event::Kind::kRecoverClaim, 7, Perm::kWrite}).next;
  CHECK(s.GrantOf(7) == Perm::kWrite);
  CHECK(s.GrantOf(2) == Perm::kWrite);
  CHECK(s.HolderCount() == 2);
}
