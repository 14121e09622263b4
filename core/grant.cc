// GET and LOCK: obtaining a permission here (from the parent if this node
// lacks it), recalling conflicting children's grants, and granting it:
// to a child, with the bytes it needs, or to local access, moving the
// local read's or write's bytes at that same instant.
#include <cstring>

#include "core/conversions.h"
#include "core/log.h"
#include "core/replica.h"

namespace vshare {

bool Replica::BlockedByFailed(uint64_t block, Perm want, LinkId except) const {
  if (!child_leases_.any_failed()) return false;
  uint64_t failed = 0;
  for (const auto& [child, until] : child_leases_.failed())
    if (child != except) failed |= children_.MaskOf(child);
  const BlockState st = StateOf(block);
  for (uint64_t bits = st.holders & failed; bits; bits &= bits - 1)
    if (want == Perm::kWrite || st.GrantOf(__builtin_ctzll(bits)) == Perm::kWrite) return true;
  return false;
}

// Whether the job needs the block's bytes here, not just the permission.
static bool NeedsBytes(const GrantJob& g, uint32_t block_size) {
  switch (g.local) {
    case GrantJob::Local::kNone: return g.op == IoOp::kGet;
    case GrantJob::Local::kWrite: return !(g.offset == 0 && g.data && g.data->size() == block_size);
    default: return true;
  }
}

// A local write's bytes, into its block's slot (the set locked), at the
// instant it is granted.
void Replica::ApplyWrite(BlockTable::Locked& set, BlockTable::Slot& s, const GrantJob& g) {
  if (s.data) std::memcpy(s.data + g.offset, g.data->data(), g.data->size());
  s.valid = true;
  s.prefetched = false;
  ++s.writes;
  s.version = cfg_.is_root ? table_->NextVersion() : 0;
  set.MarkDirty(&s);
}

bool Replica::AdvanceGrant(uint64_t block, Job& j, GrantJob& g, Time now) {
  const bool local = j.from == kLocal;
  if (local && j.cancelled) return true;  // its caller gave up: nothing to do
  if (g.local == GrantJob::Local::kWrite && j.durable) {  // write-through: the store has it now
    CompleteLocalOp(j.local_op, j.store_error.ok() ? Status::Ok() : j.store_error);
    return true;
  }
  // (With --kernel-cache, local access also waits while the lease runs out
  // unrenewed: kernel_pages.cc.)
  if (!LeaseValid(now) || (local && kernel_fenced_)) {  // every copy from the parent is indeterminate: renew first
    if (!parent_lease_.heartbeat_in_flight()) SendHeartbeat(now);
    return false;  // PumpAll once renewed
  }
  if (BlockedByFailed(block, g.want, j.from)) {
    if (local) return false;  // Tick pumps it when the failed child's grants go
    Fail(j, WireStatus::kInRecovery, "block " + std::to_string(block) + " waits for a failed child's lease");
    return true;
  }
  BlockState state = StateOf(block);
  state.held = Held(block, now);
  const ChildIndex who = local ? kLocalIndex : children_.IndexOf(j.from);
  if (who == kNoIndex) {
    Fail(j, WireStatus::kBusy, "too many children");
    return true;
  }
  const Transition t = Step(state, Event{Event::Kind::kRequest, who, g.want});
  const Action& first = t.actions.front();
  switch (first.kind) {
    case Action::Kind::kAskParent:
      if (j.hops == 0) {
        Fail(j, WireStatus::kLoopDetected, "hops ran out");
        return true;
      }
      AskParent(block, j, g, now);
      return false;
    case Action::Kind::kInvalidate:
    case Action::Kind::kWait:
      for (const Action& a : t.actions)
        if (a.kind == Action::Kind::kInvalidate) Invalidate(block, children_.LinkOf(a.child), a.perm, now);
      return false;
    case Action::Kind::kGrant:
      break;
  }
  // A child that kept a copy of this very version needs only the grant.
  const bool unchanged = g.op == IoOp::kGet && !local && g.version != 0 && g.version == state.version &&
                         (cfg_.is_root || HasCopy(block));
  const bool needs_bytes = NeedsBytes(g, block_size()) && !unchanged;
  if (needs_bytes && !HasCopy(block)) {
    if (cfg_.is_root) FillFromStore(block);  // then again from the top
    else AskParent(block, j, g, now);         // permission without a copy: fetch the data
    return false;
  }
  // A child given WRITE may change the bytes behind the kernel's pages.
  if (!local && g.want == Perm::kWrite && !KernelPagesGone(block, now)) return false;
  // The grant itself. Recording a child's takes the permission away from
  // local access first, so the bytes read below are the latest.
  Store(block, t.next);
  // Local access goes on from the engine (which may fill kernel pages), or
  // the child's grant now keeps it out: either way the fence has done its work.
  KernelPagesUsed(block);
  if (local) {
    switch (g.local) {
      case GrantJob::Local::kRead: {
        if (cfg_.kernel_cache) {  // counted like a fast-path read (kernel_pages.cc's rounds)
          BlockTable::Locked set = table_->Lock(block);
          if (BlockTable::Slot* s = set.Find(block)) ++s->reads;
        }
        if (read_sink_ && table_->keeps_data()) {  // straight to where the caller wants it
          bool sunk;
          {
            BlockTable::Locked set = table_->Lock(block);
            sunk = read_sink_(j.local_op, {set.Find(block)->data, block_size()});
          }
          if (sunk) {
            CompleteLocalOp(j.local_op, Status::Ok());
            return true;
          }
        }
        Bytes bytes;
        GetCopy(block, &bytes);
        CompleteLocalOp(j.local_op, Status::Ok(), std::move(bytes));
        return true;
      }
      case GrantJob::Local::kPrefetch: {
        BlockTable::Locked set = table_->Lock(block);
        if (BlockTable::Slot* s = set.Find(block)) s->prefetched = true;
        return true;
      }
      case GrantJob::Local::kWrite: {
        {
          BlockTable::Locked set = table_->Lock(block);
          ApplyWrite(set, *set.Find(block), g);
        }
        if (cfg_.is_root && cfg_.write_through) {  // the other root must find it in the store
          StartDurability({block}, 0, block, /*sync=*/false);
          return false;
        }
        CompleteLocalOp(j.local_op, Status::Ok());
        return true;
      }
      default:
        CompleteLocalOp(j.local_op, Status::Ok());
        return true;
    }
  }
  Message r = ReplyFor(j.reply_xid);
  r.volume_id = cfg_.volume_id;
  r.block_num = block;
  r.permissions = ToWire(g.want);
  r.ttl_ms = TtlLeft(block, now);
  r.hb_ttl_ms = hb_ttl_ms_;
  r.version = StateOf(block).version;
  if (needs_bytes) {
    // A block of a range request goes straight into the range's buffer.
    Bytes slice;
    if (uint8_t* dst = ranges_.AnswerBuffer(j.reply_xid, &slice); dst && table_->keeps_data()) {
      BlockTable::Locked set = table_->Lock(block);
      std::memcpy(dst, set.Find(block)->data, block_size());
      r.data = slice;
    } else {
      Bytes bytes;
      GetCopy(block, &bytes);
      r.data = std::move(bytes);
    }
  }
  Finish(j, r);
  return true;
}

bool Replica::AdvanceRelease(uint64_t block, Job& j, Time) {
  if (j.from != kLocal)
    Store(block, Step(StateOf(block), Event{Event::Kind::kRelease, children_.Find(j.from), Perm::kNone}).next);
  Finish(j, ReplyFor(0));
  return true;
}

void Replica::AskParent(uint64_t block, Job& j, const GrantJob& g, Time now) {
  const bool have_copy = Held(block, now) >= Perm::kRead && HasCopy(block);
  const bool needs_bytes = NeedsBytes(g, block_size());
  // With a valid copy, or no need of the bytes (a whole-block write), only
  // the permission is missing: LOCK. Otherwise GET.
  Message up = Upstream(j, have_copy || !needs_bytes ? IoOp::kLock : IoOp::kGet, block, std::max(g.want, Perm::kRead));
  Call c{CallKind::kUpstream, block, 0, Perm::kNone, now};
  // A copy kept without a valid grant (a lapsed TTL, a rejoin) whose
  // version is known: the parent sends the bytes only if they changed.
  if (!have_copy && needs_bytes && !IsDirty(block) && HasCopy(block) && StateOf(block).version != 0) {
    c.version = StateOf(block).version;
    up.version = c.version;
  }
  j.sent = now;
  CallParent(std::move(up), c);
  runs_[block].waiting_parent = true;
}

// Local access to a block with nothing queued, asked of the parent at
// once: what Pump and AdvanceGrant would do with the new queue's only job,
// without their many looks at the block. Two cases, where Step() can only
// ask the parent: a block with no slot here (a GET for a read or
// read-ahead, a LOCK for a whole-block write), and a write to a clean copy
// held READ under a valid grant that no child shares (a LOCK). False, the
// job untouched, when anything could make the general way do otherwise.
bool Replica::AskParentNow(uint64_t block, Job& j, Time now) {
  const GrantJob* g = j.as<GrantJob>();
  if (!table_ || block >= block_count() || !g || cfg_.is_root || !connected_ || rejoining_ || kernel_fenced_ || j.hops == 0 || !LeaseValid(now) ||
      upstream_in_flight_ >= UpstreamWindow() || !window_waiters_.empty() || runs_.count(block))
    return false;
  const bool write = g->local == GrantJob::Local::kWrite;
  if (g->want != (write ? Perm::kWrite : Perm::kRead)) return false;
  bool lock = write && !NeedsBytes(*g, block_size());
  bool install = false;
  {
    BlockTable::Locked set = table_->Lock(block);
    if (BlockTable::Slot* s = set.Find(block)) {
      if (!write || !s->valid || s->dirty || s->busy || (s->holders & ~children_.stale_mask()) != 0 ||
          HeldIn(*s, now) != Perm::kRead)
        return false;
      lock = true;  // the copy is here: only the permission is missing
    } else {
      install = true;
    }
  }
  if (install && (!lock && write)) return false;  // a partial write to a block not here reads it first
  if (install && !InstallNow(block, now)) return false;
  Message up = Upstream(j, lock ? IoOp::kLock : IoOp::kGet, block, g->want);
  j.sent = now;
  if (j.local_op) local_ops_[j.local_op] = block;
  BlockRun& run = runs_[block];
  run.jobs.push_back(std::move(j));
  run.waiting_parent = true;
  CallParent(std::move(up), Call{CallKind::kUpstream, block, 0, Perm::kNone, now});
  return true;
}

void Replica::Invalidate(uint64_t block, LinkId child, Perm to, Time now) {
  Message m;
  m.opcode = Opcode::kInvalidate;
  m.volume_id = cfg_.volume_id;
  m.block_num = block;
  m.permissions = ToWire(to);
  m.originator = cfg_.self;
  const uint64_t id = next_call_++;
  calls_.emplace(id, Call{CallKind::kInvalidate, block, child, to, now});
  Outgoing o{Outgoing::Kind::kCall, false, child, id, std::move(m)};
  // No longer than the child's lease, plus what the child itself may have
  // to wait for a failed child of its own (that one's lease, ending no
  // later, and the grace period): past that, a live child has answered.
  if (const Time* end = child_leases_.LeaseEnd(child))
    o.timeout = std::max(std::chrono::milliseconds(200),
                         std::chrono::duration_cast<std::chrono::milliseconds>(*end - now) +
                             std::chrono::milliseconds(2 * margin_ms() + hb_ttl_ms_));
  effects_.messages.push_back(std::move(o));
  ++runs_[block].acks;
}

void Replica::UpstreamReply(uint64_t block, Job& j, const Call& call, const Status& st, const Message& reply,
                            Time now) {
  BlockRun& run = runs_[block];
  const bool ok = st.ok() && reply.opcode == Opcode::kOkReply;
  if (st.ok() && reply.opcode == Opcode::kErrReply && reply.status == WireStatus::kInRecovery) {
    // Above us a failed node's grant holds the block for a while: ask again
    // shortly (the caller's own deadline bounds the wait).
    run.retry_at = now + std::chrono::milliseconds(100);
    Restage(j);
    return Park(block, run);
  }
  if (!st.ok() && !j.as<PutJob>()) {
    // The link failed under the request, or it timed out: ask again once
    // there is a parent to ask (after a rejoin, RECOVER goes first). Every
    // request but PUT is safe to repeat: a repeated FLUSH or FORWARD is
    // ignored once the sender's WRITE is gone. The asker's own deadline
    // bounds the wait.
    run.retry_at = now + std::chrono::milliseconds(200);
    Restage(j);
    return Park(block, run);
  }
  GrantJob* g = j.as<GrantJob>();
  if (!g) {  // the job reads the answer when it runs again
    if (!st.ok()) {
      Fail(j, WireStatus::kBusy, "parent unreachable: " + st.ToString());
      run.jobs.erase(run.jobs.begin());
      return Pump(block, now);
    }
    j.upstream_reply = std::make_unique<Message>(reply);
    return Pump(block, now);
  }
  if (!ok) {
    Fail(j, st.ok() ? reply.status.value_or(WireStatus::kBusy) : WireStatus::kBusy,
         st.ok() ? "the parent refused: " + Describe(reply) : "parent unreachable: " + st.ToString());
    run.jobs.erase(run.jobs.begin());
    return Pump(block, now);
  }
  if (!reply.data && call.version != 0) {
    if (reply.version != call.version || !HasCopy(block)) {
      // Neither the bytes nor a matching version: ask again, for the bytes.
      DropCopy(block);
      BlockState none = StateOf(block);
      none.held = Perm::kNone;
      Store(block, none);
      Restage(j);
      return Pump(block, now);
    }
    ++revalidated_;  // our copy is current: nothing was sent again
  }
  {
    BlockTable::Locked set = table_->Lock(block);
    if (BlockTable::Slot* s = set.Find(block))
      TakeGrantIn(set, *s, call.sent, reply, reply.data ? &*reply.data : nullptr, reply.version);
    else
      LogError("volume " + cfg_.volume_name + ": internal error: a grant of block " + std::to_string(block) +
               " has no slot; dropped");
  }
  Pump(block, now);
}

// A parent's grant, into the block's slot (its set locked): the permission,
// its end, counted from when we asked (the parent's own grant cannot end
// sooner), the bytes if sent, and their version. Bytes we wrote and still
// hold WRITE for are the newer and stay; dirty bytes without WRITE were
// superseded while we could not say so, and the parent's replace them.
void Replica::TakeGrantIn(BlockTable::Locked& set, BlockTable::Slot& s, Time asked, const Message& grant,
                          const Bytes* data, std::optional<uint64_t> version) {
  BlockState bs = Load(s);
  bs.held = FromWire(grant.permissions, Perm::kRead);
  StoreIn(s, bs);
  SetExpiryIn(s, asked + std::chrono::milliseconds(grant.ttl_ms.value_or(0)));
  if (data && data->size() == block_size() && !(s.dirty && bs.held == Perm::kWrite)) {
    if (s.dirty)
      LogWarning("volume " + cfg_.volume_name + ": block " + std::to_string(s.block) +
                 ": writes made here were superseded and are lost");
    if (s.data) std::memcpy(s.data, data->data(), block_size());
    s.valid = true;
    s.prefetched = false;
    ++s.writes;
    set.MarkClean(&s);
  }
  if (version && !s.dirty) s.version = *version;
}

// The usual answer to a block of a GET or LOCK range (OK, the permission,
// the bytes for a GET), or of a FLUSH range (TakeFlushed). It is taken
// here as HandleReply and UpstreamReply would take it, with the block's
// set locked once instead of once per field; anything less usual (a
// revalidation, a dirty copy, a job of another kind) goes the general way
// (false).
bool Replica::TakeGranted(RangeAdapter::Granted& g, const Message& part, Time now) {
  auto it = calls_.find(g.call_id);
  if (it == calls_.end() || it->second.kind != CallKind::kUpstream || it->second.version != 0 || rejoining_ ||
      (!g.data.empty() && g.data.size() != block_size()) || it->second.block != g.block)
    return false;
  const Call call = it->second;
  auto r = runs_.find(call.block);
  if (r == runs_.end() || r->second.jobs.empty()) return false;
  if (r->second.jobs.front().as<FlushJob>()) return g.data.empty() && TakeFlushed(g.call_id, call, r->second, part, now);
  if (!r->second.jobs.front().as<GrantJob>()) return false;
  BlockRun& run = r->second;
  uint64_t done = 0;  // the local operation finished here, if any
  bool finished = false;
  {
    BlockTable::Locked set = table_->Lock(call.block);
    BlockTable::Slot* s = set.Find(call.block);
    if (!s || s->dirty) return false;
    TookAnswer(g.call_id, call, part, now);
    TakeGrantIn(set, *s, call.sent, part, g.data.empty() ? nullptr : &g.data, g.version);
    finished = FinishLone(set, run, *s, now, &done);
  }
  run.waiting_parent = false;
  if (finished) HeadDone(call.block, run, done, now);
  else Pump(call.block, now);
  return true;
}

// A range part answers the upstream call: it is over, and the parent was
// heard (and renewed our lease, with HB_TTL), as HandleReply takes it.
void Replica::TookAnswer(uint64_t call_id, const Call& call, const Message& part, Time now) {
  calls_.erase(call_id);
  parent_lease_.Heard(now);
  if (part.hb_ttl_ms && !rejoining_) parent_lease_.Renewed(call.sent, *part.hb_ttl_ms);
  UpstreamDone();
}

// The queue's head job was finished outside Pump: its local operation
// completes, and what queued behind it (a sync write's flush) goes on.
void Replica::HeadDone(uint64_t block, BlockRun& run, uint64_t op, Time now) {
  CompleteLocalOp(op, Status::Ok());
  if (run.jobs.empty()) RetireRun(block);
  else Pump(block, now);
}

// A read, read-ahead or write at the head of the block's queue, its
// grant just taken into the slot (the set locked): done here,
// as AdvanceGrant would do it when its queue is pumped, with no second
// look at the block. Only when nothing could make that look come out
// otherwise: no recall, no children's grants on the block
// (so Step() grants local access to what we hold), a valid lease (and
// copy, for a read), no kernel pages to account for. A read's bytes go to
// its caller now, a write's into the slot; *op is then the operation to
// complete once the lock is let go.
bool Replica::FinishLone(BlockTable::Locked& set, BlockRun& run, BlockTable::Slot& s, Time now, uint64_t* op) {
  Job& head = run.jobs.front();
  GrantJob* g = head.as<GrantJob>();
  if (!g || head.from != kLocal || head.cancelled || head.durable || cfg_.kernel_cache ||
      cfg_.is_root || run.acks != 0 || run.recall || run.store_ops != 0 || now < run.retry_at || !connected_ ||
      (s.holders & ~children_.stale_mask()) != 0 || !s.data || HeldIn(s, now) < g->want)
    return false;
  switch (g->local) {
    case GrantJob::Local::kPrefetch:
      if (g->want != Perm::kRead || !s.valid) return false;
      s.prefetched = true;
      break;
    case GrantJob::Local::kRead:
      if (g->want != Perm::kRead || !s.valid || !read_sink_ || !read_sink_(head.local_op, {s.data, block_size()}))
        return false;  // the general way hands the bytes over in the completion
      *op = head.local_op;
      break;
    case GrantJob::Local::kWrite:
      if (g->want != Perm::kWrite || !g->data || g->offset + g->data->size() > block_size() ||
          (NeedsBytes(*g, block_size()) && !s.valid))
        return false;
      ApplyWrite(set, s, *g);
      *op = head.local_op;
      break;
    default:
      return false;
  }
  run.jobs.erase(run.jobs.begin());
  return true;
}

}  // namespace vshare
