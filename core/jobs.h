// Jobs: the requests queued on one block, one kind per alternative.
//
// Requests for a block are served one at a time, in arrival order (a
// BlockRun is the queue). Each is a Job: what every kind shares (who asked,
// how to answer, where the upstream request stands) and the kind itself,
// which says what the job does and how far it has got. The engine's
// Advance() for each kind lives in the file named after it.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <variant>
#include <vector>

#include "core/block_table.h"
#include "core/bytes.h"
#include "core/coherence.h"
#include "core/effects.h"
#include "core/message.h"

namespace vshare {

// GET or LOCK, from a child or for local access: obtain `want` on the block
// here and grant it (grant.cc).
struct GrantJob {
  enum class Local { kNone, kStart, kRead, kWrite, kPrefetch };
  Local local = Local::kNone;  // kNone: a child's request
  Perm want = Perm::kRead;
  IoOp op = IoOp::kGet;        // a child's GET wants the bytes, a LOCK only the permission
  size_t offset = 0;           // kWrite: where in the block
  std::optional<Bytes> data;   // kWrite: the bytes
  uint64_t version = 0;        // a child's GET: the version of the copy it kept
};

// A child's LOCK NO_PERMS: giving a grant back (grant.cc).
struct ReleaseJob {};

// PUT: write-through to the root, the writer keeps nothing (put.cc).
struct PutJob {
  enum class Stage { kInvalidate, kSend, kStored, kAnswered };
  Stage stage = Stage::kInvalidate;
  Bytes data;
};

// FLUSH: a WRITE holder's bytes go toward the root (flush.cc). From a
// child with its bytes, or this node's own (a local flush, or a child's
// FORWARD without DATA asking for our copy to go a level up).
// A block's bytes as the fast path wrote them, handed to its flush: good
// while the slot still bears `mark` (BlockTable::WriteMark).
struct Carried {
  Bytes data;
  BlockTable::WriteMark mark;
};

struct FlushJob {
  enum class Stage { kStart, kStored, kSent };
  Stage stage = Stage::kStart;
  Perm keep = Perm::kNone;   // what the sender keeps
  bool own = false;          // this node's own bytes go up
  bool forward = false;      // for a child's FORWARD without DATA
  bool resend = false;       // the upstream request must go again as it was
  bool durable = false;      // FORCE_SYNC at the root: wait for the store
  std::optional<Bytes> data;
  Perm asked = Perm::kNone;  // what we asked to keep
  Perm had = Perm::kNone;    // what this node held before it sent its bytes
  uint32_t writes = 0;       // the slot's write count when its bytes were taken
  // The root: the slot's write count once a child's bytes were put in it.
  // While it still matches, the slot holds exactly `data`, and a
  // write-back may send `data` itself instead of copying the slot.
  uint32_t stored_writes = 0;
  std::optional<Carried> carried;  // our own bytes, handed over by the writer
};

// A child's FORWARD with DATA (semi-sync): the bytes are kept here (forward.cc).
struct StoreForwardJob {
  Bytes data;
  bool stored = false;  // the root: kept, waiting for the store
};

// ForwardLocal: this node's dirty bytes go to the parent only (forward.cc).
struct ForwardJob {
  enum class Stage { kStart, kSent };
  Stage stage = Stage::kStart;
  uint32_t writes = 0;
};

// One block of DropAllLocal (drop.cc).
struct DropJob {
  enum class Stage { kStart, kPassedUp, kRelease, kReleased, kWritten };
  Stage stage = Stage::kStart;
};

// After a rejoin: claim back bytes that may exist only here (recovery.cc).
struct RecoverJob {
  enum class Stage { kStart, kSent };
  Stage stage = Stage::kStart;
  Time give_up{};
  // Bytes a recall took from this sync writer to its READ copy (recall.cc),
  // not its own dirty ones: the lost parent held WRITE on them at its end
  // if they were not yet above it, so a claim found superseded lost nothing.
  bool recalled = false;
};

// Make room: the block leaves the table (evict.cc).
struct EvictJob {
  enum class Stage { kStart, kRecalled, kWritten };
  Stage stage = Stage::kStart;
};

struct Job {
  LinkId from = kLocal;
  uint64_t reply_xid = 0;  // the child's request XID
  uint64_t local_op = 0;   // the local operation id (0: nobody waits)
  uint16_t flags = 0;
  uint8_t hops = 0;
  Originator originator{};
  bool cancelled = false;  // its local caller gave up: take no effect
  Time sent{};             // when the upstream request left
  std::unique_ptr<Message> upstream_reply;  // the parent's answer, once it came
  // The root: this job's bytes have reached the store durably (FORCE_SYNC,
  // write-through), or that failed.
  bool durable = false;
  Status store_error;
  std::variant<GrantJob, ReleaseJob, PutJob, FlushJob, StoreForwardJob, ForwardJob, DropJob, RecoverJob, EvictJob>
      kind;

  template <typename T>
  T* as() { return std::get_if<T>(&kind); }
  template <typename T>
  const T* as() const { return std::get_if<T>(&kind); }
};

// An INVALIDATE from the parent being served; never queued (recall.cc).
struct Recall {
  uint64_t reply_xid = 0;
  Perm to = Perm::kNone;
  uint64_t recalled = 0;  // children sent INVALIDATE for it (bits)
  bool invalidated_children = false;
  // Further INVALIDATEs of the block that came while this one was served
  // (the parent recalled it twice, for two requests): answered with it.
  std::vector<uint64_t> more_xids;
};

// The queue of one block (short: usually one job).
struct BlockRun {
  std::vector<Job> jobs;
  int acks = 0;  // INVALIDATEs to children in flight
  bool waiting_parent = false;
  bool waiting_slot = false;  // no room in the block's set yet
  bool waiting_window = false;  // no room in the upstream window yet
  bool parked = false;          // in Replica::parked_
  int store_ops = 0;          // the root: store I/O on the block under way; the queue waits
  std::optional<Recall> recall;
  // --kernel-cache: the kernel's pages of the block, for the job in front
  // or the recall (core/kernel_pages.cc).
  enum class Pages : uint8_t { kKept, kDropping, kDropped };
  Pages pages = Pages::kKept;
  uint64_t page_token = 0;
  Time retry_at{};  // after IN_RECOVERY from the parent: ask again then
  // The root: a child's bytes that a FLUSH served inline put into the slot
  // (with the slot's write count then), for the write-back to send as they
  // came; until their durability sequence is over.
  std::optional<Bytes> stored;
  uint32_t stored_writes = 0;
};

}  // namespace vshare
