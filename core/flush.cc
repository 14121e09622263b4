// FLUSH: a WRITE holder's bytes go toward the root (001, Example Four).
// Also the semi-sync FORWARD, both ways, and DropAll's one block.
#include "core/conversions.h"
#include "core/log.h"
#include "core/replica.h"
#include "core/request_check.h"

namespace vshare {

bool Replica::DurableIfForced(uint64_t block, Job& j) {
  if (!cfg_.is_root || j.durable) return true;
  const bool forced = (j.flags & msg_flags::kForceSync) != 0;
  if (!forced && !cfg_.write_through) return true;
  StartDurability({block}, 0, block, /*sync=*/forced);
  return false;
}

// The answer to a child's FLUSH names the permission it keeps: what our
// records give it now. A recall may have cut its grant while the FLUSH was
// on its way here or further up, and a child that kept what it asked for
// would go on writing under a WRITE nobody counts, its bytes then dropped
// by the next FLUSH as stale.
Message Replica::FlushAnswer(uint64_t block, const Job& j, const FlushJob& f) const {
  Message r = ReplyFor(j.reply_xid);
  if (f.own || j.from == kLocal) return r;
  // (Unsaid when it is what the child asked to keep, as in 001's Example Four.)
  if (const Perm now = GrantOf(block, j.from); now != f.keep) r.permissions = ToWire(now);
  return r;
}

bool Replica::AdvanceFlush(uint64_t block, Job& j, FlushJob& f, Time now) {
  if (f.stage == FlushJob::Stage::kStart) {
    if (!f.own && GrantOf(block, j.from) != Perm::kWrite) {
      // The sender's WRITE was already recalled, and its data came back with
      // the recall; this older copy must not overwrite what followed. The
      // answer says what the recall left it.
      Finish(j, FlushAnswer(block, j, f));
      return true;
    }
    if (f.own) {
      // Nothing newer here than upstream any more (a recall took it up
      // since the flush was asked for): done.
      if (!IsDirty(block)) {
        if (j.from == kLocal && (j.flags & msg_flags::kForceSync)) {
          DurableByBarrier(j.local_op);
          return true;
        }
        Finish(j, ReplyFor(j.reply_xid));
        return true;
      }
      // What we hold, lease or not: dirty data must go up either way (a
      // parent that reclaimed our grant meanwhile ignores it).
      f.had = StateOf(block).held;
      if (f.had != Perm::kWrite) {
        Fail(j, WireStatus::kBusy, "no WRITE permission to flush block " + std::to_string(block));
        return true;
      }
    }
    if (!f.own) {
      f.stored_writes = PutCopy(block, *f.data, /*dirty=*/true);
      Changed(block);
      Store(block, Step(StateOf(block), Event{Event::Kind::kRelease, children_.Find(j.from), f.keep}).next);
    }
    if (cfg_.is_root) {
      f.stage = FlushJob::Stage::kStored;
    } else {
      if (j.hops == 0) {
        Fail(j, WireStatus::kLoopDetected, "hops ran out");
        return true;
      }
      // What this node keeps must cover what its children (and it) still hold.
      Perm mine = j.from == kLocal ? f.keep : (cfg_.keep_copies ? Perm::kRead : Perm::kNone);
      if (f.forward) mine = std::max(mine, Held(block, now));  // we pass it on, we do not give it up
      const BlockState st = StateOf(block);
      for (uint64_t bits = st.holders; bits; bits &= bits - 1) mine = std::max(mine, st.GrantOf(__builtin_ctzll(bits)));
      f.asked = mine;
      // The bytes as they are now: writes queued ahead of this flush have
      // been applied since it was asked for. Keeping less than WRITE, local
      // writes stop now, or they would be dirty under a permission the
      // parent no longer counts.
      {
        BlockTable::Locked set = table_->Lock(block);
        BlockTable::Slot* s = set.Find(block);
        if (f.own && mine < Perm::kWrite) s->held = mine;
        f.writes = s->writes;
        f.data = FlushBytes(*s, f);
      }
      Message up = Upstream(j, IoOp::kFlush, block, mine);
      up.data = f.data;
      f.stage = FlushJob::Stage::kSent;
      CallUpstream(block, j, std::move(up), now);
      return false;
    }
  }
  if (f.stage == FlushJob::Stage::kStored) {  // the root
    if (!DurableIfForced(block, j)) return false;
    if (!j.store_error.ok()) {
      Fail(j, WireStatus::kBusy, "cannot store block " + std::to_string(block) + ": " + j.store_error.message());
      return true;
    }
    Finish(j, FlushAnswer(block, j, f));
    return true;
  }
  // kSent.
  if (f.resend) {  // the request was lost or refused for now: the same again
    f.resend = false;
    Message again = Upstream(j, IoOp::kFlush, block, f.asked);
    again.data = f.data;
    CallUpstream(block, j, std::move(again), now);
    return false;
  }
  const Message& up = *j.upstream_reply;
  BlockState st = StateOf(block);
  if (up.opcode != Opcode::kOkReply) {
    if (f.own && f.had == Perm::kWrite) {  // nothing was given up after all
      st.held = Perm::kWrite;
      Store(block, st);
    }
    Fail(j, up.status.value_or(WireStatus::kBusy), "the parent refused the FLUSH");
    return true;
  }
  TakeFlushAnswer(block, j, f, up);
  Finish(j, FlushAnswer(block, j, f));
  return true;
}

Bytes Replica::FlushBytes(const BlockTable::Slot& s, const FlushJob& f) const {
  const bool same = f.carried && s.data && table_->MarkOf(s).slot == f.carried->mark.slot &&
                    s.writes == f.carried->mark.writes;
  return same ? f.carried->data : CopyBytes(s);
}

// The parent's OK to our FLUSH, into the block's slot with one lock.
void Replica::TakeFlushAnswer(uint64_t block, const Job& j, const FlushJob& f, const Message& up) {
  // The parent may leave us less than we asked to keep (a flush it found
  // stale, because a recall had already taken our data).
  const Perm held = up.permissions ? std::min(f.asked, FromWire(up.permissions, Perm::kNone)) : f.asked;
  // Our bytes reached the root, newer than any we left with the parent
  // alone before (recall.cc, forward.cc): we answer for those no more.
  // Not when the parent found the flush stale: then they are still there.
  const bool reached_root = f.own && held == f.asked;
  {
    BlockTable::Locked set = table_->Lock(block);
    BlockTable::Slot* s = set.Find(block);
    if (!s) return;
    BlockState st = Load(*s);
    st.held = held;
    StoreIn(*s, st);
    if (up.ttl_ms) SetExpiryIn(*s, j.sent + std::chrono::milliseconds(*up.ttl_ms));
    if (held != Perm::kNone) set.MarkCleanIf(s, f.writes);
    if (reached_root) s->forwarded = false;
  }
  if (reached_root) forwarded_.erase(block);
  if (held == Perm::kNone) DropCopy(block);
}

// A flush of this node's own dirty bytes, for local access, with nothing
// queued for the block: sent at once, as Pump and AdvanceFlush would send
// it, with one look at the block. Only a flush that keeps WRITE (which
// covers any child's grant, so nothing else decides what is kept) of a
// block held WRITE; anything else takes the general way (false, the job
// untouched).
bool Replica::FlushNow(uint64_t block, Job& j, Time now) {
  FlushJob* f = j.as<FlushJob>();
  if (!table_ || block >= block_count() || !f || !f->own || f->forward || f->keep != Perm::kWrite || j.from != kLocal || cfg_.is_root || !connected_ ||
      rejoining_ || j.hops == 0 || upstream_in_flight_ >= UpstreamWindow() || !window_waiters_.empty() ||
      runs_.count(block))
    return false;
  {
    BlockTable::Locked set = table_->Lock(block);
    BlockTable::Slot* s = set.Find(block);
    if (!s || !s->dirty || table_->HeldOf(*s) != Perm::kWrite) return false;
    f->had = Perm::kWrite;
    f->asked = Perm::kWrite;
    f->writes = s->writes;
    f->data = FlushBytes(*s, *f);
  }
  Message up = Upstream(j, IoOp::kFlush, block, Perm::kWrite);
  up.data = f->data;
  f->stage = FlushJob::Stage::kSent;
  if (j.local_op) local_ops_[j.local_op] = block;
  BlockRun& run = runs_[block];
  run.jobs.push_back(std::move(j));
  CallUpstream(block, run.jobs.back(), std::move(up), now);
  return true;
}

// The parent's OK to such a flush, a part of a range answer: taken as
// AdvanceFlush takes it once the queue is pumped, without pumping it. Not
// for a flush to send again, nor while the queue would wait (a recall, the
// link).
bool Replica::TakeFlushed(uint64_t call_id, const Call& call, BlockRun& run, const Message& part, Time now) {
  Job& j = run.jobs.front();
  FlushJob* f = j.as<FlushJob>();
  if (!f || f->stage != FlushJob::Stage::kSent || f->resend || !f->own || j.from != kLocal || run.acks != 0 ||
      run.recall || run.store_ops != 0 || !connected_ || now < run.retry_at || !table_->Lock(call.block).Find(call.block))
    return false;
  TookAnswer(call_id, call, part, now);
  TakeFlushAnswer(call.block, j, *f, part);
  run.waiting_parent = false;
  const uint64_t op = j.local_op;
  run.jobs.erase(run.jobs.begin());
  HeadDone(call.block, run, op, now);
  return true;
}

bool Replica::IsSyncChild(LinkId child) const {
  const auto f = children_.Flags(child);
  return f && (*f & connect_flags::kSyncWrite);
}

// A sync child's bytes, just recalled to NONE: before the job that recalled
// them goes on, they go to the root, durably, as a flush of our own that
// keeps WRITE here. Nobody waits on the flush itself; should it fail, the
// bytes stay dirty here, as they did before.
void Replica::WriteThroughFirst(BlockRun& run) {
  Job j = LocalJob(0);
  j.flags = msg_flags::kForceSync;
  FlushJob f;
  f.own = true;
  f.keep = Perm::kWrite;
  j.kind = std::move(f);
  run.jobs.insert(run.jobs.begin(), std::move(j));
  ++write_throughs_;
}

// ---- Semi-sync ----

void Replica::HandleForward(LinkId child, const Message& m, Time now) {
  auto refuse = [&](WireStatus st, std::optional<ParamType> param) { SendToChild(child, ErrorReply(m.xid, st, param)); };
  if (!connected_ || !table_) return refuse(WireStatus::kNoSuchVolume, std::nullopt);
  if (auto refusal = CheckBlockRequest(m, cfg_.volume_id, block_count(), block_size()))
    return refuse(refusal->status, refusal->param);
  if (m.originator == cfg_.self) return refuse(WireStatus::kLoopDetected, std::nullopt);
  Job j;
  j.from = child;
  j.reply_xid = m.xid;
  j.flags = m.flags;
  if (IsSyncChild(child)) j.flags |= msg_flags::kForceSync;
  j.hops = m.hops_left;
  j.originator = m.originator;
  if (m.data) {
    j.kind = StoreForwardJob{*m.data};
  } else {
    FlushJob f;
    f.own = true;
    f.forward = true;
    f.keep = cfg_.keep_copies ? Perm::kRead : Perm::kNone;
    j.kind = std::move(f);
  }
  Enqueue(*m.block_num, std::move(j), now);
}

// A child's semi-sync write: the bytes are kept here (dirty) while the
// child keeps WRITE. Stale when the child's WRITE has been recalled since:
// the recall's answer brought newer bytes.
bool Replica::AdvanceStoreForward(uint64_t block, Job& j, StoreForwardJob& s, Time now) {
  if (!s.stored) {
    if (GrantOf(block, j.from) != Perm::kWrite) {
      Message r = ReplyFor(j.reply_xid);
      r.permissions = WirePerm::kNone;
      Finish(j, r);
      return true;
    }
    PutCopy(block, s.data, /*dirty=*/true);
    Changed(block);
    s.stored = true;
    if ((j.flags & msg_flags::kForceSync) && !cfg_.is_root) {
      // A sync writer's FORWARD goes all the way: flush our copy up.
      FlushJob f;
      f.own = true;
      f.forward = true;
      f.keep = cfg_.keep_copies ? Perm::kRead : Perm::kNone;
      j.kind = std::move(f);
      return AdvanceFlush(block, j, *j.as<FlushJob>(), now);
    }
  }
  if (!DurableIfForced(block, j)) return false;
  if (!j.store_error.ok()) {
    Fail(j, WireStatus::kBusy, "cannot store block " + std::to_string(block) + ": " + j.store_error.message());
    return true;
  }
  Finish(j, ReplyFor(j.reply_xid));
  return true;
}

// Semi-sync, this node's side: the parent gets the bytes, we keep WRITE and
// stay responsible.
bool Replica::AdvanceForward(uint64_t block, Job& j, ForwardJob& f, Time now) {
  if (f.stage == ForwardJob::Stage::kStart) {
    Message up;
    {
      BlockTable::Locked set = table_->Lock(block);
      BlockTable::Slot* s = set.Find(block);
      if (!s || !s->dirty || !s->valid) {  // a recall took it up already
        Finish(j, ReplyFor(0));
        return true;
      }
      f.writes = s->writes;
      up.data = CopyBytes(*s);
    }
    up.opcode = Opcode::kForward;
    up.volume_id = parent_volume_id_;
    up.block_num = block;
    up.flags = j.flags & msg_flags::kForceSync;
    up.hops_left = cfg_.max_hops;
    up.originator = cfg_.self;
    f.stage = ForwardJob::Stage::kSent;
    CallUpstream(block, j, std::move(up), now);
    return false;
  }
  const Message& up = *j.upstream_reply;
  if (up.opcode != Opcode::kOkReply) {
    Fail(j, up.status.value_or(WireStatus::kBusy), "the parent refused the FORWARD of block " + std::to_string(block));
    return true;
  }
  // Writes to the block queue behind this job or wait for it, so the copy
  // is still what was sent, unless a recall has taken it meanwhile.
  if (Held(block, now) == Perm::kWrite && IsDirty(block)) {
    {
      BlockTable::Locked set = table_->Lock(block);
      if (BlockTable::Slot* s = set.Find(block)) set.MarkCleanIf(s, f.writes);
    }
    if (!IsDirty(block)) SetForwarded(block, true);
  }
  Finish(j, ReplyFor(0));
  return true;
}

// ---- DropAll, one block ----

// Make sure the bytes live elsewhere, then give the permission back and
// forget the copy.
bool Replica::AdvanceDrop(uint64_t block, Job& j, DropJob& d, Time now) {
  if (cfg_.is_root) {
    // The root: written back first; kept while a child still holds it.
    if (d.stage == DropJob::Stage::kStart && IsDirty(block)) {
      d.stage = DropJob::Stage::kWritten;
      StartDurability({block}, 0, block);
      return false;
    }
    if (!j.store_error.ok()) {
      Fail(j, WireStatus::kBusy, "cannot write block " + std::to_string(block) + " back: " + j.store_error.message());
      return true;
    }
    if (StateOf(block).holders == 0 && !IsDirty(block)) DropCopy(block);
    Finish(j, ReplyFor(0));
    return true;
  }
  if (d.stage == DropJob::Stage::kStart) {
    if (IsDirty(block)) {  // a FLUSH keeping nothing (Example Four)
      FlushJob f;
      f.own = true;
      f.keep = Perm::kNone;
      j.kind = std::move(f);
      return AdvanceFlush(block, j, *j.as<FlushJob>(), now);
    }
    d.stage = DropJob::Stage::kRelease;
    if (Forwarded(block)) {
      Message up;
      up.opcode = Opcode::kForward;  // no DATA: pass your copy a level up
      up.volume_id = parent_volume_id_;
      up.block_num = block;
      up.hops_left = cfg_.max_hops;
      up.originator = cfg_.self;
      d.stage = DropJob::Stage::kPassedUp;
      CallUpstream(block, j, std::move(up), now);
      return false;
    }
  }
  if (d.stage == DropJob::Stage::kPassedUp) {
    const Message& up = *j.upstream_reply;
    if (up.opcode != Opcode::kOkReply) {  // keep the copy: it may be the only other one
      Fail(j, up.status.value_or(WireStatus::kBusy), "the parent could not pass block " + std::to_string(block) + " up");
      return true;
    }
    SetForwarded(block, false);
    d.stage = DropJob::Stage::kRelease;
  }
  if (d.stage == DropJob::Stage::kRelease) {
    // A proxy keeps what its children still hold.
    if (StateOf(block).holders != 0) {
      Finish(j, ReplyFor(0));
      return true;
    }
    if (Held(block, now) == Perm::kNone) {
      DropCopy(block);
      Finish(j, ReplyFor(0));
      return true;
    }
    Message up = Upstream(j, IoOp::kLock, block, Perm::kNone);
    d.stage = DropJob::Stage::kReleased;
    CallUpstream(block, j, std::move(up), now);
    return false;
  }
  // kReleased: the LOCK NO_PERMS was answered. The copy goes either way; a
  // parent that missed it only sends an INVALIDATE we answer at once.
  DropCopy(block);
  Finish(j, ReplyFor(0));
  return true;
}

}  // namespace vshare
