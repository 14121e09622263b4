#include "core/block_table.h"

#include <doctest/doctest.h>

using namespace vshare;

TEST_CASE("a root grants local access without tracking anything") {
  BlockTable t(Perm::kWrite);
  auto a = t.Apply(5, {Event::Kind::kRequest, kLocal, Perm::kWrite});
  REQUIRE(a.size() == 1);
  CHECK(a[0].kind == Action::Kind::kGrant);
  t.Apply(5, {Event::Kind::kWriteDone, kLocal, Perm::kWrite});
  CHECK(t.tracked() == 0);
}

TEST_CASE("the local fast path answers only for untracked blocks the default covers") {
  BlockTable root(Perm::kWrite);
  CHECK(root.GrantLocalFast(3, Perm::kWrite));
  root.Apply(3, {Event::Kind::kRequest, 2, Perm::kRead});  // a child now holds READ
  CHECK_FALSE(root.GrantLocalFast(3, Perm::kRead));       // the slow path decides
  BlockTable child(Perm::kNone);
  CHECK_FALSE(child.GrantLocalFast(3, Perm::kRead));
}

TEST_CASE("grants to children are tracked, and released entries go away") {
  BlockTable t(Perm::kWrite);
  auto a = t.Apply(9, {Event::Kind::kRequest, 3, Perm::kRead});
  REQUIRE(a.size() == 1);
  CHECK(a[0] == Action{Action::Kind::kGrant, 3, Perm::kRead});
  CHECK(t.tracked() == 1);
  CHECK(t.Get(9).GrantOf(3) == Perm::kRead);
  CHECK(t.Get(10).GrantOf(3) == Perm::kNone);
  t.Apply(9, {Event::Kind::kRelease, 3, Perm::kNone});
  CHECK(t.tracked() == 0);
}

TEST_CASE("a non-root node asks its parent before granting") {
  BlockTable t(Perm::kNone);
  auto a = t.Apply(1, {Event::Kind::kRequest, kLocal, Perm::kRead});
  REQUIRE(a.size() == 1);
  CHECK(a[0].kind == Action::Kind::kAskParent);
  t.Apply(1, {Event::Kind::kParentGrant, kLocal, Perm::kRead});
  a = t.Apply(1, {Event::Kind::kRequest, kLocal, Perm::kRead});
  CHECK(a[0].kind == Action::Kind::kGrant);
}
