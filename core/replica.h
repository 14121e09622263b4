// Replica: one node's part in sharing one volume, as a pure state machine.
//
// A Replica knows only its parent (through calls it makes) and its children
// (by LinkId). Events come in through the On*() methods and StartLocal();
// what the node must do comes out of TakeOutbox() (messages) and
// TakeLocalDone() (completed local operations). It never blocks, sleeps,
// reads a clock or touches a socket: time arrives with each event. The
// network adapter (net/) and the simulation in tests deliver the same events.
//
// Protocol behaviour (doc/protocol.md, doc/architecture.md):
//  - CONNECT: a node that does not serve the volume yet connects upward
//    first; each node gives its children its own volume ID and maps it back
//    to its parent's ID on every request it forwards.
//  - Requests for a block are served in arrival order, one at a time. A
//    request first obtains this node's own permission from the parent, then
//    invalidates conflicting children and waits for their replies, then is
//    granted. An INVALIDATE from the parent is never queued behind them: it
//    recalls the children's grants and answers as soon as they have.
//  - GET and LOCK grant READ or WRITE; a proxy keeps a copy of what passes
//    through. PUT writes through to the root and leaves the writer no
//    permission. FLUSH sends a WRITE holder's data up to the root and gives
//    back what the writer no longer needs.
//  - TTL: a node's grant expires at (request sent + TTL granted); it grants
//    its children the time it has left, so a child's grant always expires
//    first. A block whose grant expired is asked for again, with its
//    version: the bytes come again only if they changed.
//
// Not thread-safe: drive one Replica from one thread or strand.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "core/block_data.h"
#include "core/coherence.h"
#include "core/message.h"
#include "core/status.h"

namespace vshare {

using Time = std::chrono::steady_clock::time_point;

struct ReplicaConfig {
  std::string volume_name;
  uint32_t volume_id = 0;        // the ID this node gives its children
  bool is_root = false;
  uint64_t volume_size = 0;      // the root's; learned at CONNECT elsewhere
  uint32_t block_size = 4096;    // likewise
  uint32_t grant_ttl_ms = 1200 * 1000;  // the root's TTL on every grant
  uint32_t hb_ttl_ms = 30 * 1000;       // the root's global lease; below it, a cap on it
  uint32_t heartbeat_ms = 0;            // HEARTBEAT period; 0: a quarter of the lease
  // Added to a child's lease before its parent acts on its failure: covers
  // clocks that run at slightly different rates. 0: a tenth of the lease
  // (at least 100 ms).
  uint32_t lease_margin_ms = 0;
  uint8_t max_hops = 16;
  Originator self{};             // this node's address, for loop detection
  bool keep_copies = true;       // a proxy keeps a READ copy of what passes through
  // Sent in CONNECT: SYNC_WRITE, ASYNC_WRITE or neither (semi-sync), and
  // SHARED_WRITERS. A parent treats every write request of a child that
  // asked for SYNC_WRITE as FORCE_SYNC.
  uint32_t connect_flags = connect_flags::kAsyncWrite;
  // The root only: makes everything written to its store durable. A sync
  // barrier that reaches the root calls it before answering.
  std::function<Status()> root_sync;
  // The root only: forgets whatever the node kept of its store in memory,
  // so that the next read sees the image. Called when it takes the volume
  // over from another root.
  std::function<void()> root_reload;
  // The root only: the high bits of every version it gives out (0: a random
  // one). Versions name a block's bytes across the whole tree; a node that
  // keeps a copy through a lease lapse or a move asks with its version and
  // is not sent the bytes again when they are unchanged.
  uint32_t version_epoch = 0;
};

// One message the node must send. A kCall expects a reply, to be delivered
// with OnReply(call_id, ...); a kSend is a reply or a notification.
struct Outgoing {
  enum class Kind { kCall, kSend };
  Kind kind = Kind::kSend;
  bool to_parent = false;
  LinkId child = 0;    // the destination when !to_parent
  uint64_t call_id = 0;
  Message msg;
  // A kCall that must fail by then if unanswered; 0: the transport's
  // default (io_timeout).
  std::chrono::milliseconds timeout{0};
};

// The global lease and failures, for stats and status.
struct LeaseInfo {
  bool valid = false;             // copies from the parent may be used (always on the root)
  int64_t ms_left = 0;            // until the lease lapses (0 when it has)
  int64_t ms_since_renewal = -1;  // since the last renewal was sent; -1: never
  uint64_t frozen_blocks = 0;     // blocks a failed child's grants hold up
  uint64_t failed_children = 0;   // children declared failed, ever
  uint64_t rejoins = 0;           // times this node joined its parent again
  uint64_t recovered = 0;         // blocks it claimed back with RECOVER and kept
  uint64_t recovery_lost = 0;     // blocks it claimed back in vain (logged: writes lost)
  uint64_t claims_served = 0;     // RECOVERs it took from children
  uint64_t revalidated = 0;       // copies kept by version, without their bytes sent again
};

struct LocalDone {
  uint64_t op = 0;
  Status status;
  std::vector<uint8_t> data;  // ReadLocal: the block as of the grant
};

class Replica {
 public:
  Replica(ReplicaConfig cfg, BlockData* data);

  // Joins the tree: a non-root node sends CONNECT to its parent. Requests
  // made before the reply wait for it.
  void Start(Time now);

  // A message from child `child`: CONNECT, IO_REQUEST, HEARTBEAT, ...
  void OnChildMessage(LinkId child, const Message& m, Time now);
  // A request or notification from the parent: INVALIDATE, PUSH.
  void OnParentMessage(const Message& m, Time now);
  // The outcome of an earlier kCall: a reply, or a failure (timeout, closed).
  void OnReply(uint64_t call_id, const Status& st, const Message& reply, Time now);

  // Local access (the FUSE image). Each returns an operation id; completion
  // comes out of TakeLocalDone(). The data of a read is copied, and a write
  // applied, at the instant the permission is granted, inside the Replica:
  // nothing queued behind the operation can slip in between.
  //
  // Obtain `want` on `block`, with no data moved.
  uint64_t StartLocal(uint64_t block, Perm want, Time now);
  // Read the block (READ permission).
  uint64_t ReadLocal(uint64_t block, Time now);
  // Write `data` at `offset` within the block (WRITE permission). The block
  // becomes dirty here (write-back) unless this node is the root.
  uint64_t WriteLocal(uint64_t block, size_t offset, std::vector<uint8_t> data, Time now);
  // Write `data` through to the root (a PUT), keeping no permission.
  uint64_t PutLocal(uint64_t block, std::vector<uint8_t> data, Time now);
  // A sync barrier: every block held dirty here goes to the parent, then the
  // barrier goes up too, and it completes when the root has synced its
  // store (root_sync). Data a recall moved into an ancestor is covered:
  // this is what fsync on a node means. On the wire: a FLUSH without
  // BLOCK_NUM.
  uint64_t SyncLocal(Time now);
  // Send the block's data to the root, keeping `keep` (Example Four). Done
  // at once when this node holds nothing dirty for the block.
  uint64_t FlushLocal(uint64_t block, Perm keep, Time now);
  // Semi-sync: send the block's data to the parent only (FORWARD with
  // DATA), keeping WRITE. It completes when the parent holds the bytes;
  // from then on this node is responsible for them being in two places
  // (see DropAllLocal). Done at once when nothing here is dirty.
  uint64_t ForwardLocal(uint64_t block, Time now);
  // Gives back every block this node holds: a dirty one goes to the root
  // (FLUSH keeping nothing, Example Four); one whose bytes only the parent
  // has (ForwardLocal) is first passed a level further up (FORWARD without
  // DATA); then each copy is dropped and its permission returned (LOCK
  // NO_PERMS). What the cache-drop control command does on a child.
  uint64_t DropAllLocal(Time now);
  // The writer lease: a volume-wide LOCK on a dataless resource (an
  // IO_REQUEST LOCK without BLOCK_NUM), taken through the tree to the root.
  // Exclusive (WRITE) excludes every other node; shared (READ) only an
  // exclusive holder. Opens on this node are counted: they never conflict
  // with each other (one host, one kernel). Fails with kBusy when another
  // node holds an incompatible lease.
  uint64_t AcquireLeaseLocal(bool shared, Time now);
  // Undoes one AcquireLeaseLocal; the lease is given back upward once
  // nothing on this node or below it needs it. Always succeeds locally.
  uint64_t ReleaseLeaseLocal(bool shared, Time now);
  // The lease this node holds for itself and its subtree: kNone, kRead
  // (shared) or kWrite (exclusive).
  Perm lease() const;

  // A child's link closed. Unless it said DISCONNECT, the child has failed:
  // see ChildFailed.
  void OnChildGone(LinkId child, Time now);

  // Time passes: a child sends HEARTBEAT when one is due; a parent declares
  // failed the children whose lease has lapsed, and releases the grants of
  // failed children whose lease (plus the margin) has ended. Call it often
  // (every 100 ms or so); nothing times out without it.
  void Tick(Time now);
  // The link to the parent is gone. Copies stay usable until the lease
  // lapses; requests that need the parent wait.
  void OnParentLost(Time now);
  // A new link to the parent is up: CONNECT again. Once joined, everything
  // held through the old link is void: grants are gone (blocks written here
  // are claimed back with RECOVER; clean copies with a known version are
  // kept, to be revalidated by version when next read), children are
  // declared failed (they join again), and the writer lease is asked for
  // again.
  void Rejoin(Time now);
  // Leaving on purpose (unmount, stop): tells the parent with DISCONNECT, so
  // it releases this node's grants at once instead of waiting out the
  // lease. Not sent while children hold grants (their copies outlive us
  // until their leases lapse); then it completes at once.
  uint64_t LeaveLocal(Time now);
  // The root only, with a peer root (core/root_role.h): it serves until
  // `until` (Time::max() by default; Time{}: not at all). Requests that
  // arrive meanwhile are answered IN_RECOVERY; local ones wait. Nothing is
  // written to the store after `until`.
  void SetAuthority(Time until, Time now);
  // The root only: it has just taken the volume over from a failed peer,
  // which knew the grants; this one does not. For a grace period (a lease
  // and the margin) every RECOVER claim is taken on trust (one WRITE holder
  // per block existed under the old root, so honest claims never clash) and
  // every other request waits. Children of an earlier term are let go, and
  // the store is read afresh (root_reload).
  void TakeOver(Time now);
  // Children declared failed since the last call: the caller closes their
  // links.
  std::vector<LinkId> TakeFailedChildren();
  LeaseInfo lease_info(Time now) const;
  // The parent's address as this node dialed it (HOST:PORT): passed down in
  // PARENT_LIST so that children know where to go when this node fails.
  void SetParentAddress(std::string address) { parent_address_ = std::move(address); }
  // The parent's own ancestors, nearest first (from its CONNECT answer):
  // where to turn when the parent fails. Empty below a root.
  const std::vector<std::string>& upstream() const { return upstream_; }
  // True once after HEARTBEATs went unanswered three times in a row: the
  // caller should drop the link and look for another parent.
  bool TakeParentFailed() { return std::exchange(parent_failed_, false); }

  std::vector<Outgoing> TakeOutbox();
  std::vector<LocalDone> TakeLocalDone();

  bool connected() const { return connected_; }
  bool connecting() const { return connecting_; }
  // Why the last attempt to join failed (empty while none has).
  const std::string& connect_error() const { return connect_error_; }
  uint32_t parent_volume_id() const { return parent_volume_id_; }
  BlockState StateOf(uint64_t block) const;
  // The permission this node may use on `block` at `now` (TTL applied).
  Perm HeldAt(uint64_t block, Time now) const { return Held(block, now); }
  const ReplicaConfig& config() const { return cfg_; }
  // The HEARTBEAT period, and the margin added to a lease before another
  // node acts on its end (the configured values, or their defaults).
  uint32_t heartbeat_ms() const;
  uint32_t margin_ms() const;

 private:
  enum class LocalKind { kNone, kRead, kWrite, kForward, kDrop, kRecover };
  struct Job {
    LinkId from = kLocal;
    LocalKind local = LocalKind::kNone;
    size_t offset = 0;  // WriteLocal: where in the block
    uint64_t reply_xid = 0;  // the child's request XID
    uint64_t local_op = 0;   // the local operation id
    IoOp op = IoOp::kGet;
    Perm want = Perm::kRead;
    Perm keep = Perm::kNone;  // FLUSH: what the sender keeps
    bool forward = false;     // a child's FORWARD (with DATA: store it; without: pass ours up)
    std::optional<Bytes> data;
    uint16_t flags = 0;
    uint8_t hops = 0;
    Originator originator{};
    int stage = 0;                          // PUT and FLUSH: how far they got
    Time sent{};                            // when the upstream request left
    std::optional<Message> upstream_reply;  // the parent's answer to it
    Time give_up{};                         // RECOVER: when to stop asking
    uint64_t version = 0;                   // a child's GET: the version of the copy it kept
    bool resend = false;                    // FLUSH: send the upstream request again
  };
  struct Recall {  // an INVALIDATE from the parent being served
    uint64_t reply_xid = 0;
    Perm to = Perm::kNone;
    std::vector<LinkId> recalled;  // children sent INVALIDATE for it
    bool invalidated_children = false;
  };
  struct BlockRun {
    std::deque<Job> jobs;
    int acks = 0;               // INVALIDATEs to children in flight
    bool waiting_parent = false;
    std::optional<Recall> recall;
    Time retry_at{};  // after IN_RECOVERY from the parent: ask again then
  };
  struct LeaseJob {  // acquires (want READ/WRITE) or gives back (want NONE)
    LinkId from = kLocal;
    uint64_t reply_xid = 0;
    uint64_t local_op = 0;
    Perm want = Perm::kNone;
    bool shared = false;  // a local release: which count it undoes
    uint8_t hops = 0;
    Originator originator{};
    Perm asked = Perm::kNone;  // what went up to the parent
    bool reacquire = false;    // after a rejoin: ask the parent again, holders unchanged
    // After a rejoin (RECOVERY_OP): the lease of a failed child is the one
    // being claimed back, so it is no conflict.
    bool recovery = false;
  };
  enum class CallKind { kConnect, kUpstream, kInvalidate, kSync, kLease, kHeartbeat, kLeave };
  struct Call {
    CallKind kind;
    uint64_t block = 0;
    LinkId child = 0;
    Perm to = Perm::kNone;  // kInvalidate: the target permission
    Time sent{};
    uint64_t sync = 0;      // kSync: which barrier; kLeave: the local operation
    uint64_t version = 0;   // kUpstream GET: the version of the copy kept here
  };
  struct SyncOp {  // a barrier: this node's flushes, then the parent's barrier
    LinkId from = kLocal;
    uint64_t reply_xid = 0;
    uint64_t local_op = 0;
    size_t pending = 0;  // block flushes still running
    Status error;
    bool sent_up = false;
    bool drop = false;  // DropAllLocal: no barrier goes up at the end
    std::vector<uint64_t> forwarded;  // forwarded_ when it began: at the root once it succeeds
    Time retry_at{};  // sent_up failed in transport: send it again then
  };
  struct PendingConnect {
    LinkId child;
    uint64_t xid;
  };

  // Joins upward, for `originator` (ourselves, or the child whose CONNECT
  // made us need the volume) with `hops` left.
  void ConnectUpward(const Originator& originator, uint8_t hops);
  void HandleChildMessage(LinkId child, const Message& m, Time now);
  void HandleParentMessage(const Message& m, Time now);
  void HandleReply(uint64_t call_id, const Status& st, const Message& reply, Time now);
  void HandleConnect(LinkId child, const Message& m, Time now);
  void HandleIo(LinkId child, const Message& m, Time now);
  void ReplyConnect(LinkId child, uint64_t xid);
  void Enqueue(uint64_t block, Job job, Time now);
  void Pump(uint64_t block, Time now);
  bool Advance(uint64_t block, Job& j, Time now);  // true when the job is finished
  bool AdvancePut(uint64_t block, Job& j, Time now);
  bool AdvanceFlush(uint64_t block, Job& j, Time now);
  bool AdvanceForward(uint64_t block, Job& j, Time now);  // ForwardLocal
  bool AdvanceDrop(uint64_t block, Job& j, Time now);     // one block of DropAllLocal
  bool AdvanceRecover(uint64_t block, Job& j, Time now);  // after a rejoin
  void ServeRecover(uint64_t block, const Job& j, Time now);  // a child's RECOVER
  bool StoreForwarded(uint64_t block, Job& j, Time now);  // a child's FORWARD with DATA
  void HandleForward(LinkId child, const Message& m, Time now);
  // At the root, for a FORCE_SYNC request: makes the store durable. False
  // (and `j` failed) when that fails.
  bool SyncIfForced(uint64_t block, const Job& j);
  // Sends `j`'s request for `block` to the parent and parks the queue
  // until the answer (kept in j.upstream_reply).
  void CallUpstream(uint64_t block, Job& j, Message up, Time now);
  void Restage(Job& j);
  void ServeRecall(uint64_t block, Time now);
  void AskParent(uint64_t block, const Job& j, Time now);
  void Invalidate(uint64_t block, LinkId child, Perm to, Time now);
  uint64_t LeaseLocal(Perm want, bool shared);
  void PumpLease();
  // ---- Leases and failures ----
  // The HB_TTL to give a child now: our own lease's remainder at most.
  uint32_t HbTtlFor(Time now) const;
  // Copies may be used and requests served: below the root, while the
  // lease from the parent holds; at the root, while it has authority and
  // no takeover grace is running.
  bool LeaseValid(Time now) const {
    return cfg_.is_root ? now < authority_until_ && now >= claims_until_ : now < lease_until_;
  }
  // At the root: may it act at all (renew leases, take claims, write)?
  bool HasAuthority(Time now) const { return !cfg_.is_root || now < authority_until_; }
  void SendHeartbeat(Time now);
  // A call to the parent with no parameters (HEARTBEAT, DISCONNECT).
  void CallParentBare(Opcode op, Call c, std::chrono::milliseconds timeout);
  void Renewed(Time sent, uint32_t hb_ttl_ms, Time now);
  // A child stops being served: its writer lease goes back, and its grants
  // are held (blocking conflicting requests) until its lease has surely
  // lapsed, then released.
  void ChildFailed(LinkId child, Time now, const std::string& why);
  void ReleaseChild(LinkId child);
  // A failed child still holds a grant on `block` that conflicts with
  // `want` (for anyone but `except`).
  bool BlockedByFailed(uint64_t block, Perm want, LinkId except) const;
  void ResetAfterRejoin(Time now);
  void PumpAll(Time now);
  // Whether `job` can be granted here: no holder other than the requester
  // conflicts with it.
  bool LeaseConflicts(const LeaseJob& job) const;
  // The lease this subtree needs: the strongest held by a local open or a
  // child.
  Perm LeaseNeeded() const;
  void FinishLease(const LeaseJob& job, const Status& st, WireStatus wire);
  void StartSync(LinkId from, uint64_t reply_xid, uint64_t local_op, Time now, bool drop = false);
  void SyncProgress(uint64_t id, Time now);
  void RunSyncProgress(Time now);
  uint64_t FlushLocalAs(uint64_t op, uint64_t block, Perm keep, Time now);
  void FinishSync(uint64_t id, Status st);
  // Every local completion goes through here: those of a barrier's own
  // flushes count down the barrier instead of going out.
  void CompleteLocal(uint64_t op, Status st, std::vector<uint8_t> data = {});
  void Finish(const Job& j, const Message& reply);
  void Fail(const Job& j, WireStatus st, const std::string& why);
  void SendToChild(LinkId child, Message m);
  void SendToParent(Message m);
  uint64_t CallParent(Message m, Call c);
  Message ReplyFor(uint64_t xid) const;
  // An IO_REQUEST to the parent on behalf of `j`: volume ID mapped back,
  // FORCE_SYNC kept, one hop spent, the originator kept.
  Message Upstream(const Job& j, IoOp op, uint64_t block, Perm perm) const;
  static Message ErrorReply(uint64_t xid, WireStatus st, std::optional<ParamType> param = std::nullopt);
  BlockState& State(uint64_t block);
  // The block's bytes changed here: at the root a new version; below it
  // the version is unknown (0) until the bytes come from above again.
  void Changed(BlockState& st);
  Perm Held(uint64_t block, Time now) const;
  uint32_t TtlLeft(uint64_t block, Time now) const;
  uint64_t block_count() const { return (cfg_.volume_size + cfg_.block_size - 1) / cfg_.block_size; }

  ReplicaConfig cfg_;
  BlockData* data_;
  bool connected_;
  bool connecting_ = false;
  std::string connect_error_;
  uint32_t parent_volume_id_ = 0;
  std::vector<PendingConnect> waiting_connects_;
  std::unordered_map<uint64_t, BlockState> states_;
  std::unordered_map<uint64_t, Time> expiry_;  // of this node's own grant, per block
  // Blocks whose latest bytes this node sent to its parent alone (semi-sync)
  // and must pass further up before dropping its copy.
  std::unordered_set<uint64_t> forwarded_;
  std::unordered_map<LinkId, uint32_t> child_flags_;  // CONNECT_FLAGS each child asked for
  std::unordered_map<uint64_t, BlockRun> runs_;
  std::unordered_map<uint64_t, Call> calls_;
  uint64_t next_call_ = 1;
  uint64_t next_local_ = 1;
  std::unordered_map<uint64_t, SyncOp> syncs_;
  std::unordered_map<uint64_t, uint64_t> sync_flushes_;  // local op -> barrier
  uint64_t next_sync_ = 1;
  std::vector<uint64_t> pending_sync_progress_;  // barriers whose flushes all ended
  // The writer lease (one per volume).
  std::deque<LeaseJob> lease_jobs_;
  bool lease_waiting_parent_ = false;
  Time lease_retry_at_{};  // a request lost with the link goes again then
  int lease_local_exclusive_ = 0;  // opens on this node holding it
  int lease_local_shared_ = 0;
  std::unordered_map<LinkId, Perm> lease_children_;
  Perm lease_held_ = Perm::kNone;  // from the parent (the root's is implicit)
  // Leases (child side): copies are usable only before lease_until_.
  Time now_{};  // of the event being handled
  Time lease_until_{};
  Time next_heartbeat_{};
  Time last_renewal_{};
  bool heartbeat_in_flight_ = false;
  bool ever_renewed_ = false;
  bool rejoining_ = false;
  uint64_t rejoins_ = 0;
  uint64_t recovered_ = 0, recovery_lost_ = 0, claims_served_ = 0;
  // The claims of the latest rejoin, summed up in one log line when settled.
  size_t claims_pending_ = 0, claims_kept_ = 0;
  std::vector<uint64_t> claims_lost_;  // the first few
  uint64_t recovery_lost_at_rejoin_ = 0;
  bool writes_lost_ = false;  // reported once, by the next local sync barrier
  std::string last_claim_loss_;
  void ClaimSettled(uint64_t block, bool kept, const std::string& why);
  int heartbeat_failures_ = 0;  // in a row
  bool parent_failed_ = false;
  std::string parent_address_;
  std::vector<std::string> upstream_;
  // Versions (root): epoch in the high bits, a counter below.
  static constexpr int kVersionCounterBits = 40;
  uint64_t version_epoch_;
  uint64_t version_counter_ = 0;
  uint64_t revalidated_ = 0;
  // The root's authority, and the grace after a takeover (SetAuthority,
  // TakeOver).
  Time authority_until_ = Time::max();
  Time claims_until_{};
  // Leases (parent side).
  std::unordered_map<LinkId, Time> child_lease_end_;  // as granted to each live child
  std::unordered_map<LinkId, Time> failed_;           // failed children: when their grants go
  std::vector<LinkId> failed_to_close_;
  std::unordered_set<LinkId> departed_;  // said DISCONNECT: their link's close is no failure
  uint64_t failed_children_ = 0;
  std::vector<Outgoing> outbox_;
  std::vector<LocalDone> local_done_;
};

}  // namespace vshare
