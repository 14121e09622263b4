// The coherence step: what one node does about one block when something
// happens to it, as a pure function of (block state, event).
//
// A node holds a permission on each block from its parent (the root holds
// WRITE on every block: its store is authoritative and never invalidated) and
// records what it has granted to its children, one bit per child. The
// invariant kept is the one in doc/architecture.md: for each block, either one
// holder of WRITE and no other valid copy, or any number of READ holders; and
// a node's own permission always covers what it has granted below it.
//
// Step() never blocks and never does I/O. It returns the next state and the
// actions the caller must carry out (send INVALIDATEs, ask the parent, grant).
// When a request must wait for invalidations, the caller submits it again
// after the acknowledgements have been applied with further Step() calls.
// Step() is the only code that changes a block's grants.
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

// A child as the block table knows it: a bit position, 0 to 63.
using ChildIndex = int;
inline constexpr ChildIndex kLocalIndex = -1;

struct BlockState {
  Perm held = Perm::kNone;    // what this node holds from its parent
  uint64_t version = 0;       // names the bytes (doc/protocol.md, VERSION)
  uint64_t holders = 0;       // bit i: child i holds a grant
  bool child_writes = false;  // the single holder holds WRITE

  Perm GrantOf(ChildIndex child) const;
  int HolderCount() const { return __builtin_popcountll(holders); }
  bool operator==(const BlockState&) const = default;
};

struct Event {
  enum class Kind {
    kRequest,        // `child` wants `perm` (READ or WRITE; kLocalIndex for local I/O)
    kRelease,        // child `child` now holds only `perm` (LOCK/FLUSH giving back)
    kInvalidateAck,  // child `child` acknowledged an INVALIDATE; it now holds `perm`
    kParentGrant,    // the parent granted this node `perm`
    // A child that lost its parent claims back WRITE on bytes only it may
    // hold (RECOVER): it holds WRITE from now on. A failed child's grant it
    // held through stays beside it until that child is released.
    kRecoverClaim,
  };
  Kind kind;
  ChildIndex child = kLocalIndex;
  Perm perm = Perm::kNone;
};

struct Action {
  enum class Kind {
    kGrant,       // the request may proceed with `perm` for `child`
    kInvalidate,  // send INVALIDATE to child `child`, down to `perm`
    kAskParent,   // ask the parent for `perm` first
    kWait,        // invalidations are in flight: submit again after their acks
  };
  Kind kind;
  ChildIndex child = kLocalIndex;
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
