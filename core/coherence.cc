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

Perm BlockState::GrantOf(LinkId child) const {
  for (const Grant& g : grants)
    if (g.child == child) return g.perm;
  return Perm::kNone;
}

namespace {

void SetGrant(BlockState* s, LinkId child, Perm perm) {
  auto it = std::find_if(s->grants.begin(), s->grants.end(),
                         [&](const Grant& g) { return g.child == child; });
  if (perm == Perm::kNone) {
    if (it != s->grants.end()) s->grants.erase(it);
  } else if (it != s->grants.end()) {
    it->perm = perm;
  } else {
    s->grants.push_back({child, perm});
  }
}

// A request for `want` by `link` conflicts with another child's grant when
// either side is a writer. Conflicting holders are brought down to the most
// they may keep: READ beside a reader, nothing beside a writer.
Transition OnRequest(const BlockState& s, LinkId link, Perm want) {
  Transition t{s, {}};
  if (s.frozen) {
    t.actions.push_back({Action::Kind::kRefuse, link, want});
    return t;
  }
  if (s.held < want) {
    t.actions.push_back({Action::Kind::kAskParent, link, want});
    return t;
  }
  const Perm keep = (want == Perm::kWrite) ? Perm::kNone : Perm::kRead;
  for (const Grant& g : s.grants) {
    if (g.child == link) continue;
    if (g.perm > keep) t.actions.push_back({Action::Kind::kInvalidate, g.child, keep});
  }
  // Local access at this node also conflicts with a child's WRITE: the local
  // copy is stale while a child may write.
  if (!t.actions.empty()) {
    t.actions.push_back({Action::Kind::kWait, link, want});
    return t;
  }
  if (link != kLocal) SetGrant(&t.next, link, std::max(want, s.GrantOf(link)));
  t.actions.push_back({Action::Kind::kGrant, link, want});
  return t;
}

}  // namespace

Transition Step(const BlockState& state, const Event& e) {
  switch (e.kind) {
    case Event::Kind::kRequest:
      return OnRequest(state, e.link, e.perm);
    case Event::Kind::kRelease:
    case Event::Kind::kInvalidateAck: {
      Transition t{state, {}};
      if (e.link != kLocal) SetGrant(&t.next, e.link, std::min(e.perm, state.GrantOf(e.link)));
      return t;
    }
    case Event::Kind::kParentGrant: {
      Transition t{state, {}};
      t.next.held = std::max(state.held, e.perm);
      return t;
    }
    case Event::Kind::kWriteDone: {
      Transition t{state, {}};
      ++t.next.version;
      return t;
    }
  }
  return {state, {}};
}

std::string ToString(const Action& a) {
  static const char* kNames[] = {"grant", "invalidate", "ask-parent", "wait", "refuse"};
  return std::string(kNames[static_cast<int>(a.kind)]) + "(link " + std::to_string(a.link) + ", " +
         PermName(a.perm) + ")";
}

}  // namespace vshare
