// Replica: one node's part in sharing one volume, as a pure state machine.
//
// A Replica knows only its parent (through calls it makes) and its children
// (by LinkId). Events come in through the On*() methods and the local API;
// what the node must do comes out of TakeEffects() (core/effects.h). It
// never blocks, sleeps, reads a clock or touches a socket: time arrives with
// each event. The network adapter (net/) and the simulation in tests
// deliver the same events and carry out the same effects.
//
// The node's copies and its knowledge of every block live in its
// BlockTable (core/block_table.h), bounded by the cache size: the root's
// made at once, a child's when joining tells it the volume's geometry. The
// fast path (core/volume.h) serves local hits from the table on other
// threads; the Replica handles everything else.
//
// Where each mechanism lives:
//   replica.cc        entry points, effects, messages, answers to our calls
//   join.cc           CONNECT, both ways, and the volume-ID remap
//   block_queue.cc    per-block queues, room in the table, store I/O
//   grant.cc          GET and LOCK: obtaining and granting permission
//   put.cc, flush.cc  PUT; FLUSH, FORWARD (semi-sync) and DropAll
//   evict.cc          making room: what must happen before a slot is reused
//   recall.cc         INVALIDATE and PUSH from the parent
//   leases.cc         heartbeats, the children's leases, failed children
//   recovery.cc       parent loss, rejoin, RECOVER (both ways), takeover
//   writer_lock.cc    the volume-wide writer lease
//   sync_barrier.cc   fsync: the barrier through the tree
//   range_adapter.cc  ranges on the wire, blocks in here
//   range_serve.cc    a child's range request, granted on the spot where it can be
//   kernel_pages.cc   --kernel-cache: the kernel's pages dropped before bytes change elsewhere
//   coherence.cc      Step(): the only writer of grants
//
// Not thread-safe: drive one Replica from one thread or strand.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "core/block_table.h"
#include "core/child_leases.h"
#include "core/child_registry.h"
#include "core/coherence.h"
#include "core/effects.h"
#include "core/jobs.h"
#include "core/message.h"
#include "core/parent_lease.h"
#include "core/range_adapter.h"
#include "core/status.h"
#include "core/sync_barrier.h"
#include "core/writer_lock.h"

namespace vshare {

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
  // The root only: the high bits of every version it gives out (0: a random
  // one). Versions name a block's bytes across the whole tree.
  uint32_t version_epoch = 0;
  // The block table: its size, shape and hash. Capped at the volume's size.
  uint64_t cache_bytes = 128u << 20;
  uint32_t cache_ways = 8;
  CacheHash cache_hash = CacheHash::kModulo;
  bool keep_data = true;  // false: a table without bytes (large simulations)
  // The root with a peer root: every write reaches the store before it is
  // answered, so that the other root, taking over, reads what was written.
  bool write_through = false;
  // --kernel-cache: the kernel keeps pages of the image, and the engine has
  // them dropped before it lets any other node change the bytes behind
  // them (core/kernel_pages.cc).
  bool kernel_cache = false;
};

// The global lease and failures, for stats and status.
struct ReplicaStats {
  bool valid = false;             // copies from the parent may be used (always on the root)
  int64_t ms_left = 0;            // until the lease lapses (0 when it has)
  int64_t ms_since_renewal = -1;  // since the last renewal was sent; -1: never
  uint64_t frozen_blocks = 0;     // grants failed children still hold
  uint64_t failed_children = 0;   // children declared failed, ever
  uint64_t rejoins = 0;           // times this node joined its parent again
  uint64_t recovered = 0;         // blocks it claimed back with RECOVER and kept
  uint64_t recovery_lost = 0;     // blocks it claimed back in vain (logged: writes lost)
  uint64_t claims_served = 0;     // RECOVERs it took from children
  uint64_t revalidated = 0;       // copies kept by version, without their bytes sent again
  uint64_t sync_write_throughs = 0;  // sync children's recalled bytes written through to the root first
  uint64_t kernel_page_drops = 0;  // --kernel-cache: blocks whose kernel pages were dropped
  uint64_t kernel_full_drops = 0;  // --kernel-cache: whole-image drops (lease running out, rejoin)
  uint64_t grants = 0;            // blocks its children hold, counted per child
  uint64_t children = 0;          // joined children
};

class Replica final : private WriterLock::Host, private SyncBarrier::Host {
 public:
  explicit Replica(ReplicaConfig cfg);
  ~Replica() override;

  // Joins the tree: a non-root node sends CONNECT to its parent. Requests
  // made before the reply wait for it.
  void Start(Time now);

  // A message from child `child`: CONNECT, IO_REQUEST, HEARTBEAT, ...
  void OnChildMessage(LinkId child, const Message& m, Time now);
  // A request or notification from the parent: INVALIDATE, PUSH.
  void OnParentMessage(const Message& m, Time now);
  // The outcome of an earlier kCall: a reply (or one part of a range
  // reply), or a failure (timeout, closed).
  void OnReply(uint64_t call_id, const Status& st, const Message& reply, Time now);
  // A StoreOp finished.
  void OnStoreDone(uint64_t id, const Status& st, Time now);
  // A PageDrop with this token is done: the kernel holds no page of its
  // block, and the fast path is fenced off it.
  void PagesDropped(uint64_t token, Time now);
  // Its call into the kernel has been stuck for a while (a page lock).
  void PagesBlocked(uint64_t token, Time now);

  // ---- Local access (the image file) ----
  // Each returns an operation id; completion comes out of TakeEffects().
  // A read's bytes are copied, and a write applied, at the instant the
  // permission is granted: nothing queued behind the operation can slip in
  // between. (Hits never come here: Volume serves them from the table.)
  //
  // Obtain `want` on `block`, with the bytes here, and move no data.
  uint64_t StartLocal(uint64_t block, Perm want, Time now);
  // Read the block (READ permission).
  uint64_t ReadLocal(uint64_t block, Time now);
  // Where local reads' bytes go: called at the grant, with the block's
  // set locked, for each ReadLocal; when it returns true it has taken the
  // bytes, and the completion carries none. Without one (or when it returns
  // false), LocalDone::data has them.
  using ReadSink = std::function<bool(uint64_t op, std::span<const uint8_t> block)>;
  void SetReadSink(ReadSink sink) { read_sink_ = std::move(sink); }
  // Read-ahead: make the block readable here; nobody waits for it.
  void PrefetchLocal(uint64_t block, Time now);
  // Write `data` at `offset` within the block (WRITE permission). The block
  // becomes dirty here (write-back). A write of the whole block does not
  // fetch the old bytes.
  uint64_t WriteLocal(uint64_t block, size_t offset, Bytes data, Time now);
  // Write `data` through to the root (a PUT), keeping no permission.
  uint64_t PutLocal(uint64_t block, Bytes data, Time now);
  // A sync barrier: every block held dirty here goes to the parent, then the
  // barrier goes up too, and it completes when the root has made its store
  // durable. On the wire: a FLUSH without BLOCK_NUM.
  uint64_t SyncLocal(Time now);
  // Send the block's data to the root, keeping `keep` (Example Four). With
  // `durable` (a sync write), the root answers once its store has it for
  // good. Done at once when this node holds nothing dirty for the block;
  // with `durable`, once a sync barrier has taken to a synced root whatever
  // a recall or another flush moved out of here (DurableByBarrier: it goes
  // up without flushing this node's other dirty blocks).
  uint64_t FlushLocal(uint64_t block, Perm keep, Time now, bool durable = false, const Carried* carried = nullptr);
  // Semi-sync: send the block's data to the parent only (FORWARD with
  // DATA), keeping WRITE. It completes when the parent holds the bytes;
  // from then on this node is responsible for them being in two places
  // (see DropAllLocal). Done at once when nothing here is dirty.
  uint64_t ForwardLocal(uint64_t block, Time now);
  // Gives back every block this node holds: a dirty one goes to the root
  // (FLUSH keeping nothing, Example Four); one whose bytes only the parent
  // has (ForwardLocal) is first passed a level further up (FORWARD without
  // DATA); then each copy is dropped and its permission returned (LOCK
  // NO_PERMS). What the cache-drop control command does on a child; on the
  // root it writes back and empties the cache.
  uint64_t DropAllLocal(Time now);
  // The writer lease: exclusive (WRITE) excludes every other node; shared
  // (READ) only an exclusive holder. Fails with kBusy when another node
  // holds an incompatible lease. Release always succeeds locally.
  uint64_t AcquireLeaseLocal(bool shared, Time now);
  uint64_t ReleaseLeaseLocal(bool shared, Time now);
  // The lease this node holds for its own opens: kNone, kRead, kWrite.
  Perm lease() const { return writer_lock_.held_locally(); }
  // The caller gave up waiting for `op` (its deadline passed). What it asked
  // for takes no effect if it has not already: a write is not applied, a
  // writer lease granted later is given back. Nothing more is reported.
  void CancelLocal(uint64_t op, Time now);

  // ---- Membership and time ----
  // A child's link closed. Unless it said DISCONNECT, the child has failed.
  void OnChildGone(LinkId child, Time now);
  // Time passes: a child sends HEARTBEAT when one is due; a parent declares
  // failed the children whose lease has lapsed, and releases the grants of
  // failed children whose lease (plus the margin) has ended. Call it often
  // (every 50 to 100 ms); nothing times out without it.
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
  // lease. Not sent while children hold grants; then it completes at once.
  uint64_t LeaveLocal(Time now);
  // The root only, with a peer root (core/root_role.h): it serves until
  // `until` (Time::max() by default; Time{}: not at all).
  void SetAuthority(Time until, Time now);
  // The root only: it has just taken the volume over from a failed peer.
  // For a grace period (a lease and the margin) every RECOVER claim is taken
  // on trust and every other request waits. Children of an earlier term are
  // let go, and the store is read afresh.
  void TakeOver(Time now);

  Effects TakeEffects();

  // ---- What the node knows ----
  bool connected() const { return connected_; }
  bool connecting() const { return connecting_; }
  // Why the last attempt to join failed (empty while none has); and the
  // status the parent refused it with, if it answered.
  const std::string& connect_error() const { return connect_error_; }
  std::optional<WireStatus> connect_refusal() const { return connect_refusal_; }
  uint32_t parent_volume_id() const { return parent_volume_id_; }
  // The block table, once the volume's geometry is known (always at the
  // root; below it, after the first join). Safe to use from other threads
  // for the fast path once published.
  BlockTable* table() const { return table_.get(); }
  // The state of a block as the engine sees it (permission with its TTL
  // applied at `now` in HeldAt).
  BlockState StateOf(uint64_t block) const;
  Perm HeldAt(uint64_t block, Time now) const;
  Perm GrantOf(uint64_t block, LinkId child) const;
  bool IsDirty(uint64_t block) const;
  // The bytes of this node's copy, if it has one.
  std::optional<Bytes> CopyOf(uint64_t block) const;
  size_t copies() const;  // resident blocks with bytes
  const ReplicaConfig& config() const { return cfg_; }
  uint32_t hb_ttl_ms() const { return hb_ttl_ms_; }
  uint32_t heartbeat_ms() const;
  uint32_t margin_ms() const;
  ReplicaStats stats(Time now) const;
  // The parent's address as this node dialed it (HOST:PORT): passed down in
  // PARENT_LIST so that children know where to go when this node fails.
  void SetParentAddress(std::string address) { parent_address_ = std::move(address); }
  // The parent's own ancestors, nearest first (from its CONNECT answer).
  const std::vector<std::string>& upstream() const { return upstream_; }
  // Whether `child` has joined (its CONNECT was answered OK).
  bool IsJoined(LinkId child) const { return children_.Joined(child); }

 private:
  enum class CallKind { kConnect, kUpstream, kInvalidate, kSync, kLease, kHeartbeat, kLeave, kRelease };
  struct Call {
    CallKind kind;
    uint64_t block = 0;
    LinkId child = 0;
    Perm to = Perm::kNone;  // kInvalidate: the target permission
    Time sent{};
    uint64_t tag = 0;       // kSync: the barrier; kLeave: the local operation
    uint64_t version = 0;   // kUpstream GET: the version of the copy kept here
  };
  struct PendingConnect {
    LinkId child;
    uint64_t xid;
  };
  // Store I/O in flight: what waits for it.
  struct StoreWait {
    enum class Kind {
      kFill,   // blocks read into their slots
      kWrite,  // blocks written back (their slots' write counts then in `writes`)
      kSync,   // the store synced
    } kind;
    uint64_t first = 0;
    uint32_t count = 1;
    std::vector<uint32_t> writes;
    uint64_t sequence = 0;  // the durability sequence it belongs to (0: none)
    uint64_t fill = 0;      // kFill for a child's range (fills_; 0: for the blocks' queues)
  };
  // Writes, then a sync: for a barrier at the root, or a job whose bytes
  // must be durable before it goes on.
  struct Durability {
    std::vector<uint64_t> todo;  // the blocks to write, in order
    size_t next = 0;             // todo[next...] not written yet
    size_t in_flight = 0;        // blocks being written
    bool synced = false;
    Status error;
    uint64_t barrier = 0;          // for a barrier, or
    std::vector<uint64_t> blocks;  // for the head jobs of these blocks
    bool sync = true;      // false: written is enough (write-through)
    // A child's FLUSH range served inline (range_serve.cc): these blocks
    // of open range `range_key` (from block `range_first`) are answered
    // once the sequence is over.
    std::vector<uint64_t> inline_blocks;
    LinkId child = 0;
    uint64_t range_key = 0, range_first = 0;
  };

  // ---- replica.cc ----
  void HandleChildMessage(LinkId child, const Message& m, Time now);
  void HandleParentMessage(const Message& m, Time now);
  void HandleReply(uint64_t call_id, const Status& st, const Message& reply, Time now);
  void AfterEvent();
  void Finish(const Job& j, const Message& reply);
  void Fail(const Job& j, WireStatus st, const std::string& why);
  void CompleteLocalOp(uint64_t op, Status st, Bytes data = {});
  // A durable flush of a block that is no longer dirty here: its bytes
  // left with a recall, and may sit dirty in an ancestor, or unsynced at
  // the root. It completes with a sync barrier, which takes them there.
  void DurableByBarrier(uint64_t op);
  void SendToChild(LinkId child, Message m, bool urgent = false);
  void SendToParent(Message m);
  uint64_t CallParent(Message m, Call c, std::chrono::milliseconds timeout = {});
  Message ReplyFor(uint64_t xid) const;
  // An IO_REQUEST to the parent on behalf of `j`: volume ID mapped back,
  // FORCE_SYNC kept, one hop spent, the originator kept.
  Message Upstream(const Job& j, IoOp op, uint64_t block, Perm perm) const;
  static Message ErrorReply(uint64_t xid, WireStatus st, std::optional<ParamType> param = std::nullopt);
  Job LocalJob(uint64_t op) const;

  // ---- join.cc ----
  void HandleConnect(LinkId child, const Message& m, Time now);
  void ConnectUpward(const Originator& originator, uint8_t hops);
  void ReplyConnect(LinkId child, uint64_t xid);
  void Joined(const Call& call, const Status& st, const Message& reply, Time now);
  bool MakeTable(uint64_t volume_size, uint32_t block_size);

  // ---- block_queue.cc ----
  void Enqueue(uint64_t block, Job job, Time now);
  void Pump(uint64_t block, Time now);
  // The block's queue is empty and waits for nothing: it goes, and
  // whatever waited for room in its set is woken.
  void RetireRun(uint64_t block);
  void PumpAll(Time now);
  bool Advance(uint64_t block, Job& j, Time now);  // true when the job is finished
  // Room for `block` in the table; false (and the run waits) when there is
  // none yet.
  bool EnsureSlot(uint64_t block, Time now);
  // A slot for `block` at once, if one is free or holds a copy that can be
  // dropped on the spot; else false, and *costly names the block whose
  // eviction would make room (if any may be evicted).
  bool InstallNow(uint64_t block, Time now, uint64_t* costly = nullptr);
  void WakeSet(uint32_t set, Time now);
  // A block with work queued or under way keeps its slot.
  bool Pinned(uint64_t block) const { return runs_.count(block) > 0; }
  // A queue that waits for no event of its own (a retry time, the lease,
  // the link, a failed child's grants): Tick and the events that end such
  // waits pump it again (PumpAll), so that they never walk every queue.
  void Park(uint64_t block, BlockRun& run);
  void ParkAll();
  // The upstream window: at most UpstreamWindow() requests for blocks are
  // on their way to the parent at once, so that a HEARTBEAT never waits
  // behind more than that on the link and the bytes in transit stay
  // bounded. A queue whose head job would ask the parent waits for room
  // (false), and is woken, in the order it came, once there is.
  bool RoomUpstream(uint64_t block, BlockRun& run, const Job& head, Time now);
  bool MayGoUpstream(uint64_t block, const Job& head, Time now) const;
  void UpstreamDone();
  size_t UpstreamWindow() const;
  void Restage(Job& j);
  void CallUpstream(uint64_t block, Job& j, Message up, Time now);
  void StoreRequest(StoreOp::Kind kind, uint64_t block, StoreWait wait, Bytes data = {});
  // The root: read the block from the store into its slot; its queue
  // waits. With `fill`, the read is for that RangeFill.
  void FillFromStore(uint64_t block, uint64_t fill = 0);
  // The root: write the blocks' dirty bytes to the store, as part of a
  // durability sequence (0: none). Returns the blocks written.
  size_t WriteBack(const std::vector<uint64_t>& blocks, uint64_t sequence);
  // The child's FLUSH at the head of the block's queue whose bytes were
  // stored here (WriteBack sends them uncopied while the slot's write
  // count still matches), or null.
  // The bytes a child's FLUSH put into `block`'s slot, while it may still
  // hold exactly them (*writes: the slot's write count then), or null.
  const Bytes* StoredBytes(uint64_t block, uint32_t* writes) const;
  // The root: `blocks` reach the store (durably, with `sync`), then the
  // barrier completes or the block's head job goes on (Job::durable set).
  // A synced one for a single block's head job is gathered with the others
  // of the same event, so that they share one write run and one sync
  // (StartGathered, at the end of the event).
  void StartDurability(const std::vector<uint64_t>& blocks, uint64_t barrier, uint64_t for_block, bool sync = true);
  void StartGathered();
  void FeedDurability(uint64_t sequence);
  void FinishDurability(uint64_t sequence);
  void StoreDone(uint64_t id, const Status& st, Time now);

  // ---- grant.cc ----
  bool AdvanceGrant(uint64_t block, Job& j, GrantJob& g, Time now);
  bool AdvanceRelease(uint64_t block, Job& j, Time now);
  void AskParent(uint64_t block, Job& j, const GrantJob& g, Time now);
  bool AskParentNow(uint64_t block, Job& j, Time now);
  void Invalidate(uint64_t block, LinkId child, Perm to, Time now);
  void UpstreamReply(uint64_t block, Job& j, const Call& call, const Status& st, const Message& reply, Time now);
  bool BlockedByFailed(uint64_t block, Perm want, LinkId except) const;
  bool TakeGranted(RangeAdapter::Granted& g, const Message& part, Time now);
  bool FinishLone(BlockTable::Locked& set, BlockRun& run, BlockTable::Slot& s, Time now, uint64_t* op);
  void ApplyWrite(BlockTable::Locked& set, BlockTable::Slot& s, const GrantJob& g);
  void TookAnswer(uint64_t call_id, const Call& call, const Message& part, Time now);
  void HeadDone(uint64_t block, BlockRun& run, uint64_t op, Time now);
  void TakeFlushAnswer(uint64_t block, const Job& j, const FlushJob& f, const Message& up);
  // flush.cc: a local flush sent at once, and the usual answer to it taken
  // at once (TakeGranted), when nothing else could happen in between.
  bool FlushNow(uint64_t block, Job& j, Time now);
  bool TakeFlushed(uint64_t call_id, const Call& call, BlockRun& run, const Message& part, Time now);
  void TakeGrantIn(BlockTable::Locked& set, BlockTable::Slot& s, Time asked, const Message& grant, const Bytes* data,
                   std::optional<uint64_t> version);

  // ---- range_serve.cc ----
  // A child's range GET or LOCK: what can be granted on the spot is, in
  // parts; at the root, blocks it would grant but lacks are read from the
  // store, a run per read, and then granted the same way; the rest is
  // served block by block.
  void ServeRange(LinkId child, const Message& m, Time now);
  // A child's FLUSH range at the root: each block whose WRITE the child
  // holds, with nothing queued for it, is stored in its slot with one lock
  // (FlushInline) and answered in parts, at once or (a sync writer) after
  // one durability sequence for all of them; the rest block by block.
  void ServeFlushRange(LinkId child, const Message& m, Time now);
  bool FlushInline(uint64_t block, ChildIndex who, Perm keep, const Bytes& data, uint32_t* stored_writes);
  void AnswerFlushParts(LinkId child, uint64_t key, uint64_t first, const std::vector<uint64_t>& blocks,
                        const Status& error);
  // The blocks `indices` of open range `key` (request `m`), as above; no
  // store reads unless `may_fill`.
  void ServeParts(LinkId child, uint64_t key, const Message& m, const std::vector<uint32_t>& indices, bool may_fill,
                  Time now);
  // Whether the root may read `block` for a range and grant it once read:
  // nothing queued, a slot free for it, and the grant needs no recall.
  bool FillForRange(uint64_t block, LinkId child, ChildIndex who, Perm want, Time now);
  // Store reads of blocks [first, first + count) for RangeFill `id` are done.
  void FillDone(uint64_t id, uint64_t first, uint32_t count, Time now);
  struct RangeFill {
    LinkId child = 0;
    uint64_t key = 0;   // the open range (RangeAdapter::Open)
    Message request;    // the child's range request
    size_t pending = 0; // blocks still being read
  };
  std::unordered_map<uint64_t, RangeFill> fills_;
  struct InlineGrant {
    bool data = false;  // the answer carries the block's bytes (copied to dst)
    uint64_t version = 0;
    uint32_t ttl_ms = 0;
  };
  bool GrantInline(uint64_t block, LinkId child, ChildIndex who, Perm want, bool get, uint64_t kept_version,
                   uint8_t* dst, InlineGrant* out, Time now);

  // ---- put.cc, flush.cc, forward.cc, drop.cc ----
  bool AdvancePut(uint64_t block, Job& j, PutJob& p, Time now);
  bool AdvanceFlush(uint64_t block, Job& j, FlushJob& f, Time now);
  Message FlushAnswer(uint64_t block, const Job& j, const FlushJob& f) const;
  bool AdvanceStoreForward(uint64_t block, Job& j, StoreForwardJob& s, Time now);
  bool AdvanceForward(uint64_t block, Job& j, ForwardJob& f, Time now);
  bool AdvanceDrop(uint64_t block, Job& j, DropJob& d, Time now);
  void HandleForward(LinkId child, const Message& m, Time now);
  // At the root, for a FORCE_SYNC request: the job's bytes reach the store
  // durably first. False while that is under way (the job waits); a failure
  // fails the job.
  bool DurableIfForced(uint64_t block, Job& j);
  bool IsSyncChild(LinkId child) const;
  void WriteThroughFirst(BlockRun& run);

  // ---- evict.cc ----
  bool AdvanceEvict(uint64_t block, Job& j, EvictJob& e, Time now);
  void StartEvict(uint64_t block, Time now);

  // ---- kernel_pages.cc ----
  // (Both cost nothing without --kernel-cache: no lookup of the block's run.)
  bool KernelPagesGone(uint64_t block, Time now);
  void KernelPagesUsed(uint64_t block);
  void DropAllKernelPages();
  void CheckKernelFence(Time now);
  void CheckBlockedDrops(Time now);

  // ---- recall.cc ----
  void ServeRecall(uint64_t block, Time now);
  void HandlePush(const Message& m, Time now);

  // ---- leases.cc ----
  uint32_t HbTtlFor(Time now) const;
  bool LeaseValid(Time now) const {
    return cfg_.is_root ? now < authority_until_ && now >= claims_until_ : parent_lease_.Valid(now);
  }
  bool HasAuthority(Time now) const { return !cfg_.is_root || now < authority_until_; }
  void SendHeartbeat(Time now);
  void HeartbeatAnswered(const Status& st, const Message& reply, Time now);
  void ChildFailed(LinkId child, Time now, const std::string& why);
  void ReleaseChild(LinkId child);
  void PublishWindow();

  // ---- recovery.cc ----
  void ResetAfterRejoin(Time now);
  bool AdvanceRecover(uint64_t block, Job& j, RecoverJob& r, Time now);
  void ServeRecover(uint64_t block, const Job& j, const Bytes& data, Time now);
  void ClaimSettled(uint64_t block, bool kept, const std::string& why);

  // ---- The block table, as the engine uses it ----
  // The state of `block` with stale children masked off.
  BlockState Load(const BlockTable::Slot& s) const;
  // Writes `st` (permission, version, grants) into the block's slot, which
  // must exist, counting the grant change.
  void Store(uint64_t block, const BlockState& st);
  void StoreIn(BlockTable::Slot& s, const BlockState& st);  // its set locked
  // Held() and TtlLeft() for a slot whose set the caller has locked.
  Perm HeldIn(const BlockTable::Slot& s, Time now) const;
  uint32_t TtlLeftIn(const BlockTable::Slot& s, Time now) const;
  void SetExpiry(uint64_t block, Time until);
  static void SetExpiryIn(BlockTable::Slot& s, Time until);
  Time ExpiryOf(uint64_t block) const;
  uint32_t TtlLeft(uint64_t block, Time now) const;
  bool HasCopy(uint64_t block) const;
  bool GetCopy(uint64_t block, Bytes* out) const;
  // The bytes of a slot, copied, with its write count then (under its set's
  // lock, which the caller holds).
  Bytes CopyBytes(const BlockTable::Slot& s) const;
  // What a flush of our own sends: the bytes its writer handed over, while
  // the slot still holds exactly them; else a copy of the slot.
  Bytes FlushBytes(const BlockTable::Slot& s, const FlushJob& f) const;
  // CopyBytes' current chunk: slices of it are handed out front to back;
  // the bytes not handed out yet are written only here.
  struct CopyChunk {
    Bytes chunk;
    uint8_t* write = nullptr;
    size_t left = 0;
  };
  mutable CopyChunk copy_;
  // Keeps `data` as the block's bytes (dirty: newer than the parent's).
  // Returns the slot's write count after the copy (0: no slot).
  uint32_t PutCopy(uint64_t block, const Bytes& data, bool dirty);
  void MarkClean(uint64_t block);
  // Forgets the bytes and the permission; the slot stays while a run needs
  // it, and is freed when it is droppable.
  void DropCopy(uint64_t block);
  void Changed(uint64_t block);  // the bytes changed here: a new version
  void SetForwarded(uint64_t block, bool on);
  bool Forwarded(uint64_t block) const { return forwarded_.count(block) > 0; }
  Perm Held(uint64_t block, Time now) const;
  uint64_t block_count() const { return table_ ? table_->block_count() : 0; }
  uint32_t block_size() const { return table_ ? table_->block_size() : cfg_.block_size; }

  // ---- WriterLock::Host and SyncBarrier::Host ----
  Time Now() const override { return now_; }
  bool IsRoot() const override { return cfg_.is_root; }
  bool HasAuthority() const override { return HasAuthority(now_); }
  bool CanAskParent() const override { return connected_; }
  bool ClaimsPending() const override { return claims_pending_ > 0; }
  bool ChildFailed(LinkId child) const override { return child_leases_.IsFailed(child); }
  bool ChildJoined(LinkId child) const override { return children_.Joined(child); }
  void AskParentForLease(Perm target, uint8_t hops, const Originator& originator, bool recovery) override;
  void AnswerChild(LinkId child, Message reply) override { SendToChild(child, std::move(reply)); }
  void RefuseChild(LinkId child, uint64_t xid, WireStatus st) override { SendToChild(child, ErrorReply(xid, st)); }
  void CompleteLocal(uint64_t op, Status st) override { CompleteLocalOp(op, std::move(st)); }
  uint32_t volume_id() const override { return cfg_.volume_id; }
  const std::string& volume_name() const override { return cfg_.volume_name; }
  uint64_t NewLocalOp() override { return next_local_++; }
  std::vector<uint64_t> DirtyBlocks() override;
  std::vector<uint64_t> HeldBlocks() override;
  std::vector<uint64_t> ForwardedBlocks() override { return {forwarded_.begin(), forwarded_.end()}; }
  size_t WindowBlocks() const override { return UpstreamWindow(); }
  void ForgetForwarded(const std::vector<uint64_t>& blocks) override;
  void FlushBlock(uint64_t op, uint64_t block) override;
  void DropBlock(uint64_t op, uint64_t block) override;
  void FlushRoot(uint64_t barrier) override;
  void SendUp(uint64_t barrier) override;
  void AnswerChild(LinkId child, uint64_t xid) override { SendToChild(child, ReplyFor(xid)); }

  const ReplicaConfig cfg_;
  std::unique_ptr<BlockTable> table_;
  ReadSink read_sink_;
  Time now_{};
  Effects effects_;
  RangeAdapter ranges_;
  WriterLock writer_lock_;
  SyncBarrier sync_;
  ParentLease parent_lease_;
  ChildLeases child_leases_;
  ChildRegistry children_;

  // Joining.
  bool connected_;
  bool connecting_ = false;
  bool rejoining_ = false;
  std::string connect_error_;
  std::optional<WireStatus> connect_refusal_;
  uint32_t parent_volume_id_ = 0;
  uint32_t hb_ttl_ms_;  // the lease this node gives: the configured one, cut to its parent's
  std::vector<PendingConnect> waiting_connects_;
  std::string parent_address_;
  std::vector<std::string> upstream_;

  // Blocks.
  std::unordered_map<uint64_t, BlockRun> runs_;
  // --kernel-cache: page drops under way, by token (one per block at most).
  struct PageDropping {
    uint64_t block = 0;
    bool blocked = false;  // PagesBlocked came
  };
  std::unordered_map<uint64_t, PageDropping> page_drops_;
  uint64_t next_page_drop_ = 1;
  bool kernel_fenced_ = false;
  uint64_t kernel_page_drops_ = 0;
  uint64_t kernel_full_drops_ = 0;  // the lease is running out unrenewed: local access waits
  std::unordered_map<uint32_t, std::vector<uint64_t>> set_waiters_;  // set -> blocks waiting for room
  std::unordered_map<uint64_t, uint64_t> local_ops_;  // local op -> its block (for CancelLocal)
  std::unordered_map<uint64_t, uint64_t> barrier_for_;  // a barrier's op -> the durable flush it completes
  // Blocks whose latest bytes this node sent to its parent alone (semi-sync)
  // and must pass further up before dropping its copy. Each is in the table.
  std::unordered_set<uint64_t> forwarded_;
  std::unordered_map<uint64_t, Call> calls_;
  uint64_t next_call_ = 1;
  uint64_t next_local_ = 1;
  std::unordered_map<uint64_t, StoreWait> store_waits_;
  std::unordered_map<uint64_t, Durability> durability_;
  std::vector<uint64_t> gathered_;  // blocks whose head jobs wait for a synced write, this event
  uint64_t next_store_ = 1;
  std::vector<uint64_t> wake_;  // blocks to pump once the current event is done
  std::vector<uint64_t> parked_;  // see Park()
  size_t upstream_in_flight_ = 0;
  std::deque<uint64_t> window_waiters_;  // blocks waiting for room upstream, in order
  uint64_t revalidated_ = 0;
  uint64_t write_throughs_ = 0;

  // Recovery (after a rejoin).
  uint64_t rejoins_ = 0;
  uint64_t recovered_ = 0, recovery_lost_ = 0, claims_served_ = 0;
  size_t claims_pending_ = 0, claims_kept_ = 0;  // of the latest rejoin, summed up once settled
  std::vector<uint64_t> claims_lost_;            // the first few
  uint64_t recovery_lost_at_rejoin_ = 0;
  std::string last_claim_loss_;

  // The root's authority and takeover grace, and its versions.
  Time authority_until_ = Time::max();
  Time claims_until_{};
  uint64_t version_epoch_;
};

}  // namespace vshare
