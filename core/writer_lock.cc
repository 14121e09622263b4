#include "core/writer_lock.h"

#include "core/conversions.h"
#include "core/log.h"

namespace vshare {

void WriterLock::Local(uint64_t op, bool take, bool shared, uint8_t hops, const Originator& self) {
  Request r;
  r.local_op = op;
  r.want = take ? (shared ? Perm::kRead : Perm::kWrite) : Perm::kNone;
  r.shared = shared;
  r.hops = hops;
  r.originator = self;
  queue_.push_back(r);
  Pump();
}

void WriterLock::FromChild(LinkId child, uint64_t xid, Perm want, bool recovery, uint8_t hops,
                           const Originator& originator) {
  Request r;
  r.from = child;
  r.reply_xid = xid;
  r.want = want;
  r.recovery = recovery;
  r.hops = hops;
  r.originator = originator;
  queue_.push_back(r);
  Pump();
}

void WriterLock::ChildGone(LinkId child) {
  if (!children_.count(child)) return;
  Request r;
  r.from = child;
  r.want = Perm::kNone;
  queue_.push_back(r);
  Pump();
}

void WriterLock::Cancel(uint64_t op) {
  for (Request& r : queue_)
    if (r.from == kLocal && r.local_op == op && r.want != Perm::kNone) r.cancelled = true;
}

Perm WriterLock::held_locally() const {
  if (local_exclusive_ > 0) return Perm::kWrite;
  return local_shared_ > 0 ? Perm::kRead : Perm::kNone;
}

Perm WriterLock::Needed() const {
  Perm p = held_locally();
  for (const auto& [child, held] : children_) p = std::max(p, held);
  return p;
}

bool WriterLock::Conflicts(const Request& r) const {
  auto clash = [&](Perm held) { return held > Perm::kNone && (r.want == Perm::kWrite || held == Perm::kWrite); };
  for (const auto& [child, held] : children_)
    if (child != r.from && clash(held) && !(r.recovery && host_->ChildFailed(child))) return true;
  // Opens on this node never conflict with each other, only with children.
  return r.from != kLocal && clash(held_locally());
}

void WriterLock::Finish(const Request& r, const Status& st, WireStatus wire) {
  if (r.reacquire) {
    if (!st.ok())
      LogWarning("volume " + host_->volume_name() + ": the writer lease was lost while the parent link was down (" +
                 st.message() + "); files open for writing here may conflict with another node's");
    return;
  }
  if (r.from == kLocal) {
    if (r.local_op) host_->CompleteLocal(r.local_op, st);
    return;
  }
  if (r.reply_xid == 0) return;  // a release for a child that is gone
  if (!st.ok()) return host_->RefuseChild(r.from, r.reply_xid, wire);
  Message m;
  m.opcode = Opcode::kOkReply;
  m.xid = r.reply_xid;
  m.volume_id = host_->volume_id();
  m.permissions = ToWire(r.want);
  host_->AnswerChild(r.from, std::move(m));
}

void WriterLock::Rejoined(uint8_t hops, const Originator& self) {
  held_ = Perm::kNone;
  if (held_locally() == Perm::kNone) return;
  Request r;
  r.want = held_locally();
  r.reacquire = true;
  r.recovery = true;
  r.hops = hops;
  r.originator = self;
  queue_.push_back(r);
}

void WriterLock::Pump() {
  if (host_->Now() < retry_at_) return;  // a tick comes back
  while (!queue_.empty() && !waiting_parent_ && (host_->IsRoot() || host_->CanAskParent())) {
    Request& r = queue_.front();
    Perm target;  // what this node must hold from its parent once r is done
    if (r.want == Perm::kNone) {
      if (r.asked == Perm::kNone) {  // first visit: the holder goes
        if (r.from != kLocal) children_.erase(r.from);
        else if (r.shared && local_shared_ > 0) --local_shared_;
        else if (!r.shared && local_exclusive_ > 0) --local_exclusive_;
      }
      target = Needed();
      if (host_->IsRoot() || target >= held_ || r.asked != Perm::kNone) {
        Finish(r, Status::Ok(), WireStatus::kBusy);
        queue_.pop_front();
        continue;
      }
    } else {
      if (!host_->HasAuthority()) {  // a standby root: no one may write through it
        Finish(r, Status::Busy("this root of volume " + host_->volume_name() + " is not the active one"),
               WireStatus::kInRecovery);
        queue_.pop_front();
        continue;
      }
      if (!r.reacquire && Conflicts(r)) {
        Finish(r, Status::Busy("another node holds the writer lease of volume " + host_->volume_name()),
               WireStatus::kBusy);
        queue_.pop_front();
        continue;
      }
      target = std::max(Needed(), r.want);
      if (r.from != kLocal && !host_->ChildJoined(r.from)) {
        // The child left while its request was with our parent: give back
        // what we took for it instead.
        r.want = Perm::kNone;
        r.reply_xid = 0;
        r.asked = Perm::kNone;
        continue;
      }
      if (host_->IsRoot() || target <= held_) {
        if (r.reacquire) {
          // the holders are counted already
        } else if (r.from == kLocal) {
          ++(r.want == Perm::kRead ? local_shared_ : local_exclusive_);
        } else {
          children_[r.from] = r.want;
        }
        if (r.cancelled) {  // nobody waits for it: give it back again
          Request back;
          back.want = Perm::kNone;
          back.shared = r.want == Perm::kRead;
          back.hops = r.hops;
          back.originator = r.originator;
          queue_.push_back(back);
        } else {
          Finish(r, Status::Ok(), WireStatus::kBusy);
        }
        queue_.pop_front();
        continue;
      }
      if (r.from != kLocal && r.hops == 0) {
        Finish(r, Status::IOError("hops ran out"), WireStatus::kLoopDetected);
        queue_.pop_front();
        continue;
      }
    }
    // Ask the parent for `target` (more, or less, than held now).
    r.asked = target;
    waiting_parent_ = true;
    host_->AskParentForLease(target, static_cast<uint8_t>(r.from == kLocal ? r.hops : r.hops - 1), r.originator,
                             r.recovery);
    return;
  }
}

void WriterLock::OnReply(const Status& st, const Message& reply) {
  waiting_parent_ = false;
  if (queue_.empty()) return;
  const bool ok = st.ok() && reply.opcode == Opcode::kOkReply;
  Request& r = queue_.front();
  if (r.want == Perm::kNone) {
    // Given back here whatever the parent said: nothing below needs it.
    if (!ok)
      LogWarning("volume " + host_->volume_name() + ": giving the writer lease back to the parent failed (" +
                 (st.ok() ? Describe(reply) : st.ToString()) + ")");
    held_ = r.asked;
  } else if (ok) {
    held_ = std::max(held_, r.asked);
    r.asked = Perm::kNone;  // granted when Pump looks again
    return Pump();
  } else if (!st.ok()) {
    // Lost with the link (or timed out): ask again shortly, of whatever
    // parent there is then; the asker's own deadline bounds it.
    r.asked = Perm::kNone;
    retry_at_ = host_->Now() + std::chrono::milliseconds(200);
    return;
  } else {
    const WireStatus wire = reply.status.value_or(WireStatus::kBusy);
    Finish(r,
           wire == WireStatus::kBusy ? Status::Busy("another node holds the writer lease of volume " + host_->volume_name())
                                     : Status::IOError("cannot take the writer lease: " + Describe(reply)),
           wire);
    queue_.pop_front();
    return Pump();
  }
  Finish(r, Status::Ok(), WireStatus::kBusy);
  queue_.pop_front();
  Pump();
}

}  // namespace vshare
