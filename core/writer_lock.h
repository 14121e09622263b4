// WriterLock: the volume-wide writer lease (an IO_REQUEST LOCK without
// BLOCK_NUM), taken through the tree to the root.
//
// Exclusive (WRITE) excludes every other node; shared (READ) only an
// exclusive holder. Opens on this node are counted and never conflict with
// each other (one host, one kernel). A node holds from its parent the
// strongest lease it or any child needs; it asks its parent only when that
// must grow, and gives back only when it may shrink. A conflict is refused
// with BUSY at the lowest node that sees it, so a sibling's request never
// reaches the root. There is no recall: the holder keeps the lease until
// it closes, or its link does.
//
// Requests run one at a time, in arrival order: each may wait for the
// parent, and the next must see its outcome. Not thread-safe: the engine's
// thread only.
#pragma once

#include <deque>
#include <string>
#include <unordered_map>

#include "core/coherence.h"
#include "core/effects.h"
#include "core/message.h"
#include "core/status.h"

namespace vshare {

class WriterLock {
 public:
  // What the lock needs from the engine around it.
  class Host {
   public:
    virtual ~Host() = default;
    virtual Time Now() const = 0;
    virtual bool IsRoot() const = 0;
    virtual bool HasAuthority() const = 0;  // a standby root lets no one write
    virtual bool CanAskParent() const = 0;  // joined
    virtual bool ChildFailed(LinkId child) const = 0;
    virtual bool ChildJoined(LinkId child) const = 0;
    // A LOCK without BLOCK_NUM to the parent; its answer comes back
    // through WriterLock::OnReply.
    virtual void AskParentForLease(Perm target, uint8_t hops, const Originator& originator, bool recovery) = 0;
    virtual void AnswerChild(LinkId child, Message reply) = 0;
    virtual void RefuseChild(LinkId child, uint64_t xid, WireStatus st) = 0;
    virtual void CompleteLocal(uint64_t op, Status st) = 0;
    virtual uint32_t volume_id() const = 0;
    virtual const std::string& volume_name() const = 0;
  };

  explicit WriterLock(Host* host) : host_(host) {}

  // A local open (shared or exclusive) takes or gives back one count;
  // completion as local operation `op`.
  void Local(uint64_t op, bool take, bool shared, uint8_t hops, const Originator& self);
  // A child's LOCK without BLOCK_NUM.
  void FromChild(LinkId child, uint64_t xid, Perm want, bool recovery, uint8_t hops, const Originator& originator);
  // A child is gone: its lease goes back, in turn with other requests.
  void ChildGone(LinkId child);
  // Every child's lease is void (a takeover).
  void ForgetChildren() { children_.clear(); }
  // The parent answered our LOCK (or the call failed).
  void OnReply(const Status& st, const Message& reply);
  // Joined the parent again: what was held through the old link is void;
  // what this node's opens hold is asked for again.
  void Rejoined(uint8_t hops, const Originator& self);
  // Runs what can run now; call again when something changed.
  void Pump();
  // A local caller gave up on `op`: a lease it would have taken is given
  // back as soon as it is granted.
  void Cancel(uint64_t op);

  // The lease this node holds for its own opens.
  Perm held_locally() const;
  // What this node holds from its parent (the root: nothing, implicitly all).
  Perm held_from_parent() const { return held_; }
  // What child `child` holds.
  Perm HeldBy(LinkId child) const {
    auto it = children_.find(child);
    return it == children_.end() ? Perm::kNone : it->second;
  }

 private:
  struct Request {  // acquires (want READ/WRITE) or gives back (want NONE)
    LinkId from = kLocal;
    uint64_t reply_xid = 0;
    uint64_t local_op = 0;
    Perm want = Perm::kNone;
    bool shared = false;      // a local release: which count it undoes
    uint8_t hops = 0;
    Originator originator{};
    Perm asked = Perm::kNone;  // what went up to the parent
    bool reacquire = false;    // after a rejoin: ask the parent again, holders unchanged
    // After a rejoin (RECOVERY_OP): the lease of a failed child is the one
    // being claimed back, so it is no conflict.
    bool recovery = false;
    bool cancelled = false;
  };
  bool Conflicts(const Request& r) const;
  Perm Needed() const;
  void Finish(const Request& r, const Status& st, WireStatus wire);

  Host* host_;
  std::deque<Request> queue_;
  bool waiting_parent_ = false;
  Time retry_at_{};  // a request lost with the link goes again then
  int local_exclusive_ = 0;
  int local_shared_ = 0;
  std::unordered_map<LinkId, Perm> children_;
  Perm held_ = Perm::kNone;
};

}  // namespace vshare
