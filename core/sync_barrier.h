// SyncBarrier: what fsync means on a node of the tree.
//
// A barrier flushes every block this node holds dirty (as FLUSH ranges),
// then goes up itself (a FLUSH without BLOCK_NUM), and completes when its
// parent's barrier has: each ancestor does the same, and the root makes its
// store durable (writes back its own dirty blocks, then syncs) before it
// answers. So data that a recall moved into an ancestor is covered too.
// A barrier reports once, as the kernel does, writes this node lost when
// its parent failed.
//
// DropAll is a barrier of another kind: every block held here goes back
// (dirty ones to the root first) and nothing goes up at the end.
//
// A barrier's blocks are taken in block order, a window at a time
// (Host::WindowBlocks): so the jobs and the bytes on their way stay
// bounded however much is dirty, and neighbours still go up as ranges.
//
// Not thread-safe: the engine's thread only.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "core/coherence.h"
#include "core/effects.h"
#include "core/status.h"

namespace vshare {

class SyncBarrier {
 public:
  class Host {
   public:
    virtual ~Host() = default;
    virtual Time Now() const = 0;
    virtual bool IsRoot() const = 0;
    virtual bool CanAskParent() const = 0;
    // After a rejoin, bytes claimed back with RECOVER that the new parent
    // has not settled yet: a barrier sent up before them would overtake them.
    virtual bool ClaimsPending() const = 0;
    virtual uint64_t NewLocalOp() = 0;
    virtual std::vector<uint64_t> DirtyBlocks() = 0;
    virtual std::vector<uint64_t> HeldBlocks() = 0;  // held, or dirty
    virtual std::vector<uint64_t> ForwardedBlocks() = 0;
    // How many of a barrier's block flushes (or drops) may run at once.
    virtual size_t WindowBlocks() const = 0;
    virtual void ForgetForwarded(const std::vector<uint64_t>& blocks) = 0;
    // Queue a flush (keeping what is held) or a drop of `block` as local op `op`.
    virtual void FlushBlock(uint64_t op, uint64_t block) = 0;
    virtual void DropBlock(uint64_t op, uint64_t block) = 0;
    // The root: write back and sync the store; then RootFlushed(barrier).
    virtual void FlushRoot(uint64_t barrier) = 0;
    // Below the root: a FLUSH without BLOCK_NUM to the parent; then
    // OnReply(barrier, ...).
    virtual void SendUp(uint64_t barrier) = 0;
    virtual void AnswerChild(LinkId child, uint64_t xid) = 0;
    virtual void RefuseChild(LinkId child, uint64_t xid, WireStatus st) = 0;
    virtual void CompleteLocal(uint64_t op, Status st) = 0;
  };

  explicit SyncBarrier(Host* host) : host_(host) {}

  // A barrier for local operation `op` (from == kLocal), or for a child's
  // FLUSH without BLOCK_NUM answered under `xid`.
  void Start(LinkId from, uint64_t xid, uint64_t op);
  // A barrier for bytes that have already left this node (a sync write's
  // block found clean: another flush or a recall took its bytes up). It
  // flushes nothing here; it only goes up, or syncs the root's store.
  // Flushing every dirty block here instead would take the blocks of other
  // sync writes in flight, whose own durable flushes would then find them
  // clean and start barriers in turn: a chain that lasts as long as the
  // writes do.
  void StartAbove(uint64_t op);
  // DropAllLocal, completing as `op`.
  void StartDrop(uint64_t op);
  // A local operation completed: true when it was one of a barrier's block
  // flushes or drops (it is then counted here, not reported).
  bool OnBlockDone(uint64_t op, const Status& st);
  void RootFlushed(uint64_t barrier, const Status& st);
  // The parent answered our barrier, or the call failed.
  void OnReply(uint64_t barrier, const Status& st, const Message& reply);
  // Barriers lost in transport go again once there is a parent.
  void Tick();
  // Writes made here were lost (the parent failed and the claims came too
  // late): the next local barrier fails, once.
  void WritesLost() { writes_lost_ = true; }
  // Runs what became ready; call after every event.
  void Progress();

 private:
  struct Barrier {
    LinkId from = kLocal;
    uint64_t reply_xid = 0;
    uint64_t local_op = 0;
    std::vector<uint64_t> todo;  // its blocks, in order
    size_t next = 0;             // todo[next...] not started yet
    size_t running = 0;          // started and not done
    Status error;
    bool sent_up = false;
    bool flushing_root = false;
    bool drop = false;  // DropAllLocal: nothing goes up at the end
    std::vector<uint64_t> forwarded;  // forwarded when it began: at the root once it succeeds
    Time retry_at{};  // sent_up failed in transport: send it again then
  };
  bool Pending(const Barrier& b) const { return b.running > 0 || b.next < b.todo.size(); }
  // Starts the next of the barrier's blocks, once half the window is free.
  void Feed(uint64_t id);
  void Advance(uint64_t id);
  void Finish(uint64_t id, Status st);
  uint64_t New(LinkId from, uint64_t xid, uint64_t op, bool drop);

  Host* host_;
  std::unordered_map<uint64_t, Barrier> barriers_;
  std::unordered_map<uint64_t, uint64_t> block_ops_;  // local op -> barrier
  std::vector<uint64_t> ready_;  // barriers whose flushes all ended
  std::vector<uint64_t> hungry_;  // barriers with room in their window
  uint64_t next_ = 1;
  bool writes_lost_ = false;
};

}  // namespace vshare
