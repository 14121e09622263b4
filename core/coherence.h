// The coherence step: what one node does about one block when something
// happens to it, as a pure function of (block state, event).
//
// A node holds a permission on each block from its parent (the root holds
// WRITE on every block: its store is authoritative and never invalidated) and
// tracks the permission it has granted to each child. The invariant kept is
// the one in doc/architecture.md: for each block, either one holder of WRITE
// and no other valid copy, or any number of READ holders; and a node's own
// permission always covers what it has granted below it.
//
// Step() never blocks and never does I/O. It returns the next state and the
// actions the caller must carry out (send INVALIDATEs, ask the parent, grant,
// refuse). When a request must wait for invalidations, the caller re-submits
// it after the acknowledgements have been applied with further Step() calls.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vshare {

enum class Perm : uint8_t { kNone = 0, kRead = 1, kWrite = 2 };
const char* PermName(Perm p);

// A child link, numbered by the node that owns it. kLocal is this node's own
// local access (the FUSE image file), which is never tracked as a grant: the
// local copy is valid exactly when the node's own permission allows it.
using LinkId = uint32_t;
inline constexpr LinkId kLocal = 0;

struct Grant {
  LinkId child;
  Perm perm;
  bool operator==(const Grant&) const = default;
};

struct BlockState {
  Perm held = Perm::kNone;    // what this node holds from its parent
  uint64_t version = 0;       // bumped by every write that completes here
  bool frozen = false;        // IN_RECOVERY: a failed child's grants are held
  std::vector<Grant> grants;  // children with permission other than kNone

  Perm GrantOf(LinkId child) const;
  bool operator==(const BlockState&) const = default;
};

struct Event {
  enum class Kind {
    kRequest,        // `link` wants `perm` (READ or WRITE; kLocal for local I/O)
    kRelease,        // child `link` now holds only `perm` (LOCK/FLUSH giving back)
    kInvalidateAck,  // child `link` acknowledged an INVALIDATE; it now holds `perm`
    kParentGrant,    // the parent granted this node `perm`
    kWriteDone,      // a write by `link` was applied here
  };
  Kind kind;
  LinkId link = kLocal;
  Perm perm = Perm::kNone;
};

struct Action {
  enum class Kind {
    kGrant,       // the request may proceed with `perm` for `link`
    kInvalidate,  // send INVALIDATE to child `link`, down to `perm`
    kAskParent,   // ask the parent for `perm` first
    kWait,        // invalidations are in flight: re-submit after their acks
    kRefuse,      // block frozen: answer IN_RECOVERY
  };
  Kind kind;
  LinkId link = kLocal;
  Perm perm = Perm::kNone;
  bool operator==(const Action&) const = default;
};

struct Transition {
  BlockState next;
  std::vector<Action> actions;
};

Transition Step(const BlockState& state, const Event& event);

std::string ToString(const Action& a);

}  // namespace vshare
