// Effects: what the protocol engine (core/replica.h) asks the world to do.
//
// The engine never does I/O itself. Each event it is given may leave some
// effects behind, which the caller takes with Replica::TakeEffects() and
// carries out: net/tree_node.cc over TCP and a worker pool, and the
// simulation (test/sim/sim_net.cc) in process. Both read this one contract:
//
//  - messages: in order per destination. A kCall expects an answer, given
//    back with Replica::OnReply(call_id, ...): the reply (a range request may
//    be answered in several parts, each delivered as it comes), or the
//    failure (timeout, link closed). A kSend is a reply or a notification.
//  - store: the root's store I/O, run off the engine's thread; each
//    completes with Replica::OnStoreDone(id, status). Writes and syncs run
//    one at a time in the order asked for, across events, and complete in
//    that order: a sync covers every write before it, and two writes of one
//    block land in order. Reads may run at any time, side by side.
//  - done: local operations that completed.
//  - close_children: child links to close (children declared failed).
//  - drop_parent: the parent stopped answering; close its link, look for
//    another.
//  - page_drops (--kernel-cache): byte ranges the kernel must forget from
//    its page cache. A drop with a token is answered with
//    Replica::PagesDropped(token) once done (core/kernel_pages.cc says how).
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

#include "core/bytes.h"
#include "core/coherence.h"
#include "core/message.h"
#include "core/status.h"

namespace vshare {

using Time = std::chrono::steady_clock::time_point;

// One message the node must send.
struct Outgoing {
  enum class Kind { kCall, kSend };
  Kind kind = Kind::kSend;
  bool to_parent = false;
  LinkId child = 0;  // the destination when !to_parent
  uint64_t call_id = 0;
  Message msg;
  // A kCall that must fail by then if unanswered; 0: the transport's
  // default (io_timeout).
  std::chrono::milliseconds timeout{0};
  // Goes out ahead of what is queued on the link (HEARTBEATs and their
  // answers: a lease must not wait behind megabytes of data). Only for
  // messages whose order against the rest does not matter.
  bool urgent = false;
};

// Store I/O at the root, on `count` blocks from `first`.
struct StoreOp {
  enum class Kind {
    kRead,   // into the table's slots of those blocks (marked busy meanwhile)
    kWrite,  // `data` (count whole blocks) to the store
    kSync,   // make every write asked for before it durable
  };
  uint64_t id = 0;
  Kind kind = Kind::kRead;
  uint64_t first = 0;
  uint32_t count = 0;
  Bytes data;
};

struct LocalDone {
  uint64_t op = 0;
  Status status;
  Bytes data;  // ReadLocal: the block as of the grant
};

class BlockTable;

// The kernel's cached pages of blocks [first, first + count) of this
// volume, to be dropped; count 0: every page of the image. A token other
// than 0 asks for Replica::PagesDropped(token), after dropping in rounds
// against the table's read counts, and for Replica::PagesBlocked(token) if
// a call into the kernel stays stuck for more than 20 ms
// (core/kernel_pages.cc says why).
struct PageDrop {
  uint64_t token = 0;
  uint64_t first = 0;
  uint64_t count = 0;
  BlockTable* table = nullptr;
};

struct Effects {
  std::vector<Outgoing> messages;
  std::vector<StoreOp> store;
  std::vector<LocalDone> done;
  std::vector<LinkId> close_children;
  std::vector<PageDrop> page_drops;
  bool drop_parent = false;
  bool empty() const {
    return messages.empty() && store.empty() && done.empty() && close_children.empty() && page_drops.empty() &&
           !drop_parent;
  }
};

}  // namespace vshare
