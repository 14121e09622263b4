#include "core/coherence.h"

#include <algorithm>

namespace vshare {

const char* PermName(Perm p) {
  switch (p) {
    case Perm::kNone: return "NONE";
    case Perm::kRead: return "READ";
    case Perm::kWrite: return "WRITE";
  }
  return "?";
}

Perm BlockState::GrantOf(ChildIndex child) const {
  if (child < 0 || !(holders >> child & 1)) return Perm::kNone;
  return child_writes ? Perm::kWrite : Perm::kRead;
}

namespace {

void SetGrant(BlockState* s, ChildIndex child, Perm perm) {
  const uint64_t bit = uint64_t{1} << child;
  if (perm == Perm::kNone) {
    s->holders &= ~bit;
  } else if (perm == Perm::kWrite) {
    s->holders = bit;  // OnRequest has recalled everyone else first
    s->child_writes = true;
    return;
  } else {
    s->holders |= bit;
  }
  s->child_writes = s->child_writes && s->holders != 0 && perm != Perm::kRead;
}

// A request for `want` by `child` conflicts with another child's grant when
// either side is a writer. Conflicting holders are brought down to the most
// they may keep: READ beside a reader, nothing beside a writer.
Transition OnRequest(const BlockState& s, ChildIndex child, Perm want) {
  Transition t{s, {}};
  if (s.held < want) {
    t.actions.push_back({Action::Kind::kAskParent, child, want});
    return t;
  }
  const Perm keep = want == Perm::kWrite ? Perm::kNone : Perm::kRead;
  for (uint64_t bits = s.holders; bits; bits &= bits - 1) {
    const ChildIndex other = __builtin_ctzll(bits);
    if (other == child) continue;
    if (s.GrantOf(other) > keep) t.actions.push_back({Action::Kind::kInvalidate, other, keep});
  }
  // Local access at this node also conflicts with a child's WRITE: the local
  // copy is stale while a child may write.
  if (!t.actions.empty()) {
    t.actions.push_back({Action::Kind::kWait, child, want});
    return t;
  }
  if (child != kLocalIndex) SetGrant(&t.next, child, std::max(want, s.GrantOf(child)));
  t.actions.push_back({Action::Kind::kGrant, child, want});
  return t;
}

}  // namespace

Transition Step(const BlockState& state, const Event& e) {
  switch (e.kind) {
    case Event::Kind::kRequest:
      return OnRequest(state, e.child, e.perm);
    case Event::Kind::kRelease:
    case Event::Kind::kInvalidateAck: {
      Transition t{state, {}};
      if (e.child != kLocalIndex) {
        const Perm now = state.GrantOf(e.child);
        if (now != Perm::kNone) SetGrant(&t.next, e.child, std::min(e.perm, now));
      }
      return t;
    }
    case Event::Kind::kRecoverClaim: {
      Transition t{state, {}};
      if (e.child != kLocalIndex) {
        t.next.holders |= uint64_t{1} << e.child;
        t.next.child_writes = true;
      }
      return t;
    }
    case Event::Kind::kParentGrant: {
      Transition t{state, {}};
      t.next.held = std::max(state.held, e.perm);
      return t;
    }
  }
  return {state, {}};
}

std::string ToString(const Action& a) {
  static const char* kNames[] = {"grant", "invalidate", "ask-parent", "wait"};
  return std::string(kNames[static_cast<int>(a.kind)]) + "(child " + std::to_string(a.child) + ", " +
         PermName(a.perm) + ")";
}

}  // namespace vshare
