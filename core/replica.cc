// Entry points, effects and messages; answers to our calls are routed from
// here to the mechanism that made them.
#include "core/replica.h"

#include <algorithm>
#include <random>

#include "core/conversions.h"
#include "core/log.h"
#include "core/request_check.h"

namespace vshare {

namespace {

uint64_t NewEpoch() {
  std::random_device rd;
  return 1 + rd() % ((1u << 24) - 1);  // 24 bits, never 0
}


}  // namespace

Replica::Replica(ReplicaConfig cfg)
    : cfg_(std::move(cfg)),
      ranges_(cfg_.block_size),
      writer_lock_(this),
      sync_(this),
      connected_(cfg_.is_root),
      hb_ttl_ms_(cfg_.hb_ttl_ms),
      version_epoch_(cfg_.version_epoch ? cfg_.version_epoch : NewEpoch()) {
  if (cfg_.is_root) {
    MakeTable(cfg_.volume_size, cfg_.block_size);
    table_->SetVersionEpoch(version_epoch_);
    table_->SetWriteThrough(cfg_.write_through);
  }
}

Replica::~Replica() = default;

// ---- Events ----

void Replica::OnChildMessage(LinkId child, const Message& m, Time now) {
  now_ = now;
  if (m.blocks() > 1 && Classify(m) == RequestClass::kBlocks && !child_leases_.IsFailed(child)) {
    // A range: checked as a whole, then served block by block.
    if (!connected_ || !table_) {
      SendToChild(child, ErrorReply(m.xid, WireStatus::kNoSuchVolume));
    } else if (auto refusal = CheckBlockRequest(m, cfg_.volume_id, block_count(), block_size())) {
      SendToChild(child, ErrorReply(m.xid, refusal->status, refusal->param));
    } else {
      const bool grant = m.opcode == Opcode::kIoRequest && (m.io_op == IoOp::kGet || m.io_op == IoOp::kLock);
      const bool flush = m.opcode == Opcode::kIoRequest && m.io_op == IoOp::kFlush && cfg_.is_root;
      if (grant) ServeRange(child, m, now);
      else if (flush) ServeFlushRange(child, m, now);
      else for (const Message& one : ranges_.Split(false, child, m)) HandleChildMessage(child, one, now);
    }
  } else {
    HandleChildMessage(child, m, now);
  }
  AfterEvent();
}

void Replica::OnParentMessage(const Message& m, Time now) {
  now_ = now;
  parent_lease_.Heard(now);
  if (m.opcode == Opcode::kInvalidate && m.blocks() > 1 && m.block_num && table_ &&
      *m.block_num < block_count() && m.blocks() <= block_count() - *m.block_num) {
    for (const Message& one : ranges_.Split(true, 0, m)) HandleParentMessage(one, now);
  } else {
    HandleParentMessage(m, now);
  }
  AfterEvent();
}

void Replica::OnReply(uint64_t call_id, const Status& st, const Message& reply, Time now) {
  now_ = now;
  if (ranges_.IsRangeCall(call_id)) {
    std::vector<RangeAdapter::Granted> granted;
    for (RangeAdapter::Answer& a : ranges_.SplitReply(call_id, st, reply, &granted))
      HandleReply(a.call_id, a.status, a.reply, now);
    for (RangeAdapter::Granted& g : granted)
      if (!TakeGranted(g, reply, now)) {
        std::optional<Bytes> data;
        if (!g.data.empty()) data = std::move(g.data);
        HandleReply(g.call_id, Status::Ok(), RangeAdapter::BlockReply(reply, g.block, g.version, std::move(data)), now);
      }
  } else {
    HandleReply(call_id, st, reply, now);
  }
  AfterEvent();
}

void Replica::OnStoreDone(uint64_t id, const Status& st, Time now) {
  now_ = now;
  StoreDone(id, st, now);
  AfterEvent();
}

void Replica::AfterEvent() {
  // Queues that waited for room, now that some was made.
  for (int round = 0; !wake_.empty() && round < 64; ++round)
    for (uint64_t b : std::exchange(wake_, {})) Pump(b, now_);
  StartGathered();
  sync_.Progress();
  PublishWindow();
}

Effects Replica::TakeEffects() {
  StartGathered();  // (AfterEvent does it too; this catches any event that ended without it)
  effects_.messages = ranges_.Merge(std::move(effects_.messages), [this] { return next_call_++; });
  return std::exchange(effects_, {});
}

void Replica::HandleChildMessage(LinkId child, const Message& m, Time now) {
  // A child found failed is written off until its link closes: nothing it
  // asks is served, and above all its lease is not renewed.
  if (child_leases_.IsFailed(child)) {
    if (m.opcode != Opcode::kOkReply && m.opcode != Opcode::kErrReply)
      SendToChild(child, ErrorReply(m.xid, WireStatus::kInRecovery));
    return;
  }
  switch (m.opcode) {
    case Opcode::kConnect:
      return HandleConnect(child, m, now);
    case Opcode::kIoRequest:
      break;
    case Opcode::kForward:
      return HandleForward(child, m, now);
    case Opcode::kHeartbeat: {
      if (cfg_.is_root ? !HasAuthority(now) : !LeaseValid(now)) {  // ours lapsed: we cannot extend theirs
        if (!parent_lease_.heartbeat_in_flight() && connected_) SendHeartbeat(now);
        return SendToChild(child, ErrorReply(m.xid, WireStatus::kInRecovery));
      }
      Message r = ReplyFor(m.xid);
      r.hb_ttl_ms = hb_ttl_ms_;  // cut to what we have left in SendToChild
      return SendToChild(child, std::move(r), /*urgent=*/true);
    }
    case Opcode::kDisconnect:  // leaving on purpose: nothing to wait for
      LogInfo("volume " + cfg_.volume_name + ": child link " + std::to_string(child) + " left");
      child_leases_.Departed(child);
      ReleaseChild(child);
      child_leases_.Forget(child);
      children_.ForgetFlags(child);
      return SendToChild(child, ReplyFor(m.xid));
    default:  // parent-to-child opcodes have no business here
      return SendToChild(child, ErrorReply(m.xid, WireStatus::kInvalidHeader));
  }

  // An IO_REQUEST.
  Job j;
  j.from = child;
  j.reply_xid = m.xid;
  j.flags = m.flags;
  if (IsSyncChild(child)) j.flags |= msg_flags::kForceSync;  // the child asked for sync writes when it joined
  j.hops = m.hops_left;
  j.originator = m.originator;
  auto refuse = [&](WireStatus st, std::optional<ParamType> param) { SendToChild(child, ErrorReply(m.xid, st, param)); };
  if (rejoining_) return refuse(WireStatus::kInRecovery, std::nullopt);  // our parent link is down
  const RequestClass cls = Classify(m);
  // A root serves nothing without authority; in a takeover's grace, only
  // claims (RECOVERY_OP) and sync barriers.
  const bool allowed_in_grace = (m.flags & msg_flags::kRecoveryOp) || cls == RequestClass::kBarrier;
  if (cfg_.is_root && !(allowed_in_grace ? HasAuthority(now) : LeaseValid(now)))
    return refuse(WireStatus::kInRecovery, std::nullopt);
  if (!connected_ || !table_ || !m.volume_id || *m.volume_id != cfg_.volume_id)
    return refuse(WireStatus::kNoSuchVolume, std::nullopt);
  if (!m.io_op) return refuse(WireStatus::kBadParamValue, ParamType::kIoOp);
  if (cls == RequestClass::kBarrier) return sync_.Start(child, m.xid, 0);
  if (cls == RequestClass::kWriterLease) {
    if (m.originator == cfg_.self) return refuse(WireStatus::kLoopDetected, std::nullopt);
    return writer_lock_.FromChild(child, m.xid, FromWire(m.permissions, Perm::kWrite),
                                  (m.flags & msg_flags::kRecoveryOp) != 0, m.hops_left, m.originator);
  }
  if (auto refusal = CheckBlockRequest(m, cfg_.volume_id, block_count(), block_size()))
    return refuse(refusal->status, refusal->param);
  if (m.originator == cfg_.self) return refuse(WireStatus::kLoopDetected, std::nullopt);
  if (children_.IndexOf(child) == kNoIndex) return refuse(WireStatus::kBusy, std::nullopt);
  const uint64_t block = *m.block_num;
  switch (*m.io_op) {
    case IoOp::kGet: {
      GrantJob g;
      g.want = std::max(FromWire(m.permissions, Perm::kRead), Perm::kRead);
      g.op = IoOp::kGet;
      g.version = m.version.value_or(0);
      j.kind = std::move(g);
      break;
    }
    case IoOp::kLock: {
      const Perm want = FromWire(m.permissions, Perm::kWrite);
      if (want == Perm::kNone) {
        j.kind = ReleaseJob{};
      } else {
        GrantJob g;
        g.want = want;
        g.op = IoOp::kLock;
        j.kind = std::move(g);
      }
      break;
    }
    case IoOp::kPut:
      j.kind = PutJob{PutJob::Stage::kInvalidate, *m.data};
      break;
    case IoOp::kFlush: {
      FlushJob f;
      f.data = *m.data;
      f.keep = FromWire(m.permissions, Perm::kNone);
      j.kind = std::move(f);
      break;
    }
    case IoOp::kRecover:  // a node that lost its parent, claiming what it wrote
      // Served at once, not queued: the requests in the block's queue may be
      // the ones waiting for this claim to be settled.
      ServeRecover(block, j, *m.data, now);
      return Pump(block, now);
    default:
      return refuse(WireStatus::kBadParamValue, ParamType::kIoOp);
  }
  Enqueue(block, std::move(j), now);
}

void Replica::HandleParentMessage(const Message& m, Time now) {
  if (m.opcode == Opcode::kInvalidate && m.block_num) {
    if (m.volume_id && *m.volume_id != parent_volume_id_) return SendToParent(ErrorReply(m.xid, WireStatus::kNoSuchVolume));
    if (!table_ || *m.block_num >= block_count()) return SendToParent(ReplyFor(m.xid));  // nothing of it here
    BlockRun& run = runs_[*m.block_num];
    const Perm to = FromWire(m.permissions, Perm::kNone);
    if (run.recall) {  // one under way already: this one is answered with it, and asks at least as much
      run.recall->more_xids.push_back(m.xid);
      if (to < run.recall->to) {  // children recalled to READ must now give up READ too
        run.recall->to = to;
        run.recall->recalled = 0;
      }
    } else {
      run.recall = Recall{m.xid, to, 0, false, {}};
    }
    return ServeRecall(*m.block_num, now);
  }
  if (m.opcode == Opcode::kPush) return HandlePush(m, now);
  SendToParent(ErrorReply(m.xid, WireStatus::kBadParamValue));
}

void Replica::HandleReply(uint64_t call_id, const Status& st, const Message& reply, Time now) {
  auto it = calls_.find(call_id);
  if (it == calls_.end()) return;
  const Call call = it->second;
  calls_.erase(it);
  const bool ok = st.ok() && reply.opcode == Opcode::kOkReply;
  if (st.ok() && call.kind != CallKind::kInvalidate) parent_lease_.Heard(now);
  // Any answer from the parent that carries HB_TTL renews our lease.
  if (ok && reply.hb_ttl_ms && call.kind != CallKind::kInvalidate && !rejoining_)
    parent_lease_.Renewed(call.sent, *reply.hb_ttl_ms);
  switch (call.kind) {
    case CallKind::kLeave:
      return CompleteLocalOp(call.tag, Status::Ok());  // nothing more to do either way
    case CallKind::kRelease:
      return;  // an evicted block given back: nothing waits for it
    case CallKind::kHeartbeat:
      return HeartbeatAnswered(st, reply, now);
    case CallKind::kConnect:
      return Joined(call, st, reply, now);
    case CallKind::kLease:
      return writer_lock_.OnReply(st, reply);
    case CallKind::kSync:
      return sync_.OnReply(call.tag, st, reply);
    case CallKind::kInvalidate: {
      const uint64_t block = call.block;
      BlockRun& run = runs_[block];
      --run.acks;
      if (!ok)  // its grants stand until its lease is over, then go
        ChildFailed(call.child, now,
                    "INVALIDATE of block " + std::to_string(block) + " failed: " + (st.ok() ? Describe(reply) : st.ToString()));
      if (ok && table_->Lock(block).Find(block)) {
        BlockState bs = StateOf(block);
        Store(block, Step(bs, Event{Event::Kind::kInvalidateAck, children_.Find(call.child), call.to}).next);
        if (reply.data && reply.data->size() == block_size()) {
          PutCopy(block, *reply.data, /*dirty=*/true);  // a child's write, recalled
          Changed(block);
          // A root with a peer writes it through before anything goes on.
          if (cfg_.is_root && cfg_.write_through) WriteBack({block}, 0);
          // So does a proxy, to the root, for a sync writer that kept
          // nothing: its write completes only with a barrier, and should
          // this node die with the bytes, no one would claim them back,
          // though whoever the block goes to next has seen them.
          if (!cfg_.is_root && call.to == Perm::kNone && !run.recall && !run.jobs.empty() &&
              run.jobs.front().as<GrantJob>() && IsSyncChild(call.child))
            WriteThroughFirst(run);
        }
      }
      if (run.recall) return ServeRecall(block, now);
      return Pump(block, now);
    }
    case CallKind::kUpstream: {
      UpstreamDone();
      BlockRun& run = runs_[call.block];
      run.waiting_parent = false;
      if (run.jobs.empty()) return Pump(call.block, now);
      return UpstreamReply(call.block, run.jobs.front(), call, st, reply, now);
    }
  }
}

// ---- Answers and messages ----

void Replica::DurableByBarrier(uint64_t op) {
  const uint64_t barrier = next_local_++;
  barrier_for_.emplace(barrier, op);
  sync_.StartAbove(barrier);
}

void Replica::CompleteLocalOp(uint64_t op, Status st, Bytes data) {
  if (op == 0) return;
  if (auto it = barrier_for_.empty() ? barrier_for_.end() : barrier_for_.find(op); it != barrier_for_.end()) {
    const uint64_t flush = it->second;
    barrier_for_.erase(it);
    return CompleteLocalOp(flush, std::move(st));
  }
  local_ops_.erase(op);
  if (sync_.OnBlockDone(op, st)) return;
  effects_.done.push_back({op, std::move(st), std::move(data)});
}

void Replica::Finish(const Job& j, const Message& reply) {
  if (j.from == kLocal) return CompleteLocalOp(j.local_op, Status::Ok());
  Message r = reply;
  r.xid = j.reply_xid;
  SendToChild(j.from, std::move(r));
}

void Replica::Fail(const Job& j, WireStatus st, const std::string& why) {
  if (j.from == kLocal) {
    // The application sees EIO: BUSY here means the parent could not be
    // reached or refused, not a lock someone holds.
    return CompleteLocalOp(j.local_op, Status::IOError(why + " (" + WireStatusName(st) + ")"));
  }
  SendToChild(j.from, ErrorReply(j.reply_xid, st));
}

void Replica::SendToChild(LinkId child, Message m, bool urgent) {
  if (m.opcode == Opcode::kOkReply && m.hb_ttl_ms) {
    // The child's lease may not outlast ours; the time granted is what we
    // wait for before acting on its failure.
    const uint32_t t = HbTtlFor(now_);
    if (t == 0) {
      m.hb_ttl_ms.reset();
    } else {
      m.hb_ttl_ms = t;
      if (children_.Joined(child)) child_leases_.Extend(child, now_ + std::chrono::milliseconds(t));
    }
  }
  effects_.messages.push_back(Outgoing{Outgoing::Kind::kSend, false, child, 0, std::move(m)});
  effects_.messages.back().urgent = urgent;
}

void Replica::SendToParent(Message m) {
  effects_.messages.push_back(Outgoing{Outgoing::Kind::kSend, true, 0, 0, std::move(m)});
}

uint64_t Replica::CallParent(Message m, Call c, std::chrono::milliseconds timeout) {
  if (c.sent == Time{}) c.sent = now_;
  const uint64_t id = next_call_++;
  if (c.kind == CallKind::kUpstream) ++upstream_in_flight_;
  calls_.emplace(id, c);
  const bool urgent = m.opcode == Opcode::kHeartbeat;
  effects_.messages.push_back(Outgoing{Outgoing::Kind::kCall, true, 0, id, std::move(m), timeout, urgent});
  return id;
}

Message Replica::ReplyFor(uint64_t xid) const {
  Message r;
  r.opcode = Opcode::kOkReply;
  r.xid = xid;
  return r;
}

Message Replica::ErrorReply(uint64_t xid, WireStatus st, std::optional<ParamType> param) {
  Message r;
  r.opcode = Opcode::kErrReply;
  r.xid = xid;
  r.status = st;
  if (param) r.err_param = static_cast<uint16_t>(*param);
  return r;
}

Message Replica::Upstream(const Job& j, IoOp op, uint64_t block, Perm perm) const {
  Message up;
  up.opcode = Opcode::kIoRequest;
  up.io_op = op;
  up.volume_id = parent_volume_id_;  // our ID mapped back (Example One, step 6)
  up.block_num = block;
  up.permissions = static_cast<WirePerm>(static_cast<uint16_t>(perm));
  up.flags = j.flags & msg_flags::kForceSync;
  // A local request starts with the full hop budget; a forwarded one spends
  // one (callers refuse a forwarded request that has none left).
  up.hops_left = static_cast<uint8_t>(j.from == kLocal ? cfg_.max_hops : j.hops - 1);
  up.originator = j.from == kLocal ? cfg_.self : j.originator;
  return up;
}

Job Replica::LocalJob(uint64_t op) const {
  Job j;
  j.local_op = op;
  j.hops = cfg_.max_hops;
  j.originator = cfg_.self;
  return j;
}

void Replica::AskParentForLease(Perm target, uint8_t hops, const Originator& originator, bool recovery) {
  Message up;
  up.opcode = Opcode::kIoRequest;
  up.io_op = IoOp::kLock;
  up.volume_id = parent_volume_id_;
  up.permissions = static_cast<WirePerm>(static_cast<uint16_t>(target));
  up.hops_left = hops;
  up.originator = originator;
  if (recovery) up.flags |= msg_flags::kRecoveryOp;
  CallParent(std::move(up), Call{CallKind::kLease});
}

// ---- Local access ----

uint64_t Replica::StartLocal(uint64_t block, Perm want, Time now) {
  now_ = now;
  const uint64_t op = next_local_++;
  Job j = LocalJob(op);
  GrantJob g;
  g.local = GrantJob::Local::kStart;
  g.want = want;
  j.kind = std::move(g);
  Enqueue(block, std::move(j), now);
  AfterEvent();
  return op;
}

uint64_t Replica::ReadLocal(uint64_t block, Time now) {
  now_ = now;
  const uint64_t op = next_local_++;
  // A block being read ahead: the read takes that fetch over rather than
  // queue behind it, one job for the block instead of two. (A sequential
  // reader that keeps up with its read-ahead finds most blocks so.)
  if (auto it = runs_.find(block); it != runs_.end() && it->second.jobs.size() == 1) {
    Job& head = it->second.jobs.front();
    GrantJob* g = head.as<GrantJob>();
    if (g && g->local == GrantJob::Local::kPrefetch && head.local_op == 0 && !head.cancelled) {
      g->local = GrantJob::Local::kRead;
      head.local_op = op;
      local_ops_[op] = block;
      Pump(block, now);  // (waiting for the parent, a slot or the window: it goes on when that comes)
      AfterEvent();
      return op;
    }
  }
  Job j = LocalJob(op);
  GrantJob g;
  g.local = GrantJob::Local::kRead;
  g.want = Perm::kRead;
  j.kind = std::move(g);
  if (!AskParentNow(block, j, now)) Enqueue(block, std::move(j), now);
  AfterEvent();
  return op;
}

void Replica::PrefetchLocal(uint64_t block, Time now) {
  now_ = now;
  if (!table_ || block >= block_count() || runs_.count(block) || HasCopy(block)) return;
  Job j = LocalJob(0);
  GrantJob g;
  g.local = GrantJob::Local::kPrefetch;
  g.want = Perm::kRead;
  j.kind = std::move(g);
  table_->CountReadahead(1);
  if (!AskParentNow(block, j, now)) Enqueue(block, std::move(j), now);
  AfterEvent();
}

uint64_t Replica::WriteLocal(uint64_t block, size_t offset, Bytes data, Time now) {
  now_ = now;
  const uint64_t op = next_local_++;
  if (offset + data.size() > block_size()) {
    CompleteLocalOp(op, Status::InvalidArgument("write past the end of block " + std::to_string(block)));
    return op;
  }
  Job j = LocalJob(op);
  GrantJob g;
  g.local = GrantJob::Local::kWrite;
  g.want = Perm::kWrite;
  g.offset = offset;
  g.data = std::move(data);
  j.kind = std::move(g);
  if (!AskParentNow(block, j, now)) Enqueue(block, std::move(j), now);
  AfterEvent();
  return op;
}

uint64_t Replica::PutLocal(uint64_t block, Bytes data, Time now) {
  now_ = now;
  const uint64_t op = next_local_++;
  Job j = LocalJob(op);
  j.kind = PutJob{PutJob::Stage::kInvalidate, std::move(data)};
  Enqueue(block, std::move(j), now);
  AfterEvent();
  return op;
}

uint64_t Replica::SyncLocal(Time now) {
  now_ = now;
  const uint64_t op = next_local_++;
  sync_.Start(kLocal, 0, op);
  AfterEvent();
  return op;
}

uint64_t Replica::FlushLocal(uint64_t block, Perm keep, Time now, bool durable, const Carried* carried) {
  now_ = now;
  const uint64_t op = next_local_++;
  if (!IsDirty(block) && !durable) {  // nothing newer here than upstream
    CompleteLocalOp(op, Status::Ok());
    AfterEvent();
    return op;
  }
  Job j = LocalJob(op);
  if (durable) j.flags |= msg_flags::kForceSync;
  FlushJob f;
  f.own = true;
  f.keep = keep;
  if (carried && carried->data.size() == block_size()) f.carried = *carried;
  j.kind = std::move(f);
  if (!FlushNow(block, j, now)) Enqueue(block, std::move(j), now);
  AfterEvent();
  return op;
}

void Replica::FlushBlock(uint64_t op, uint64_t block) {
  if (!IsDirty(block)) return CompleteLocalOp(op, Status::Ok());
  Job j = LocalJob(op);
  FlushJob f;
  f.own = true;
  // A barrier is about durability, not sharing: the writer keeps WRITE and
  // goes on writing while its bytes travel (what it writes meanwhile stays
  // dirty). Another node that wants the block recalls it as usual.
  f.keep = Perm::kWrite;
  j.kind = std::move(f);
  Enqueue(block, std::move(j), now_);
}

void Replica::DropBlock(uint64_t op, uint64_t block) {
  Job j = LocalJob(op);
  j.kind = DropJob{};
  Enqueue(block, std::move(j), now_);
}

uint64_t Replica::ForwardLocal(uint64_t block, Time now) {
  now_ = now;
  const uint64_t op = next_local_++;
  if (cfg_.is_root) {  // the root's store is the only place there is
    CompleteLocalOp(op, Status::Ok());
    AfterEvent();
    return op;
  }
  Job j = LocalJob(op);
  j.kind = ForwardJob{};
  Enqueue(block, std::move(j), now);
  AfterEvent();
  return op;
}

uint64_t Replica::DropAllLocal(Time now) {
  now_ = now;
  const uint64_t op = next_local_++;
  sync_.StartDrop(op);
  AfterEvent();
  return op;
}

uint64_t Replica::AcquireLeaseLocal(bool shared, Time now) {
  now_ = now;
  const uint64_t op = next_local_++;
  writer_lock_.Local(op, true, shared, cfg_.max_hops, cfg_.self);
  AfterEvent();
  return op;
}

uint64_t Replica::ReleaseLeaseLocal(bool shared, Time now) {
  now_ = now;
  const uint64_t op = next_local_++;
  writer_lock_.Local(op, false, shared, cfg_.max_hops, cfg_.self);
  AfterEvent();
  return op;
}

void Replica::CancelLocal(uint64_t op, Time now) {
  now_ = now;
  writer_lock_.Cancel(op);
  auto it = local_ops_.find(op);
  if (it == local_ops_.end()) return;
  const uint64_t block = it->second;
  local_ops_.erase(it);
  auto run = runs_.find(block);
  if (run == runs_.end()) return;
  auto& jobs = run->second.jobs;
  for (size_t i = 0; i < jobs.size(); ++i) {
    if (jobs[i].from != kLocal || jobs[i].local_op != op) continue;
    if (i == 0) {
      jobs[i].cancelled = true;  // under way: it finishes, without effect
      jobs[i].local_op = 0;
    } else {
      jobs.erase(jobs.begin() + static_cast<long>(i));
    }
    break;
  }
  Pump(block, now);
  AfterEvent();
}

uint64_t Replica::LeaveLocal(Time now) {
  now_ = now;
  const uint64_t op = next_local_++;
  if (cfg_.is_root || !connected_ || children_.total_grants() > 0) {
    CompleteLocalOp(op, Status::Ok());
    return op;
  }
  Message m;
  m.opcode = Opcode::kDisconnect;
  m.originator = cfg_.self;
  m.hops_left = 1;
  Call c{CallKind::kLeave};
  c.tag = op;
  CallParent(std::move(m), c, std::chrono::milliseconds(2000));
  return op;
}

// ---- What the node knows ----

BlockState Replica::StateOf(uint64_t block) const {
  if (table_) {
    BlockTable::Locked set = table_->Lock(block);
    if (BlockTable::Slot* s = set.Find(block)) return Load(*s);
  }
  return BlockState{cfg_.is_root ? Perm::kWrite : Perm::kNone, 0, 0, false};
}

Perm Replica::HeldAt(uint64_t block, Time now) const { return Held(block, now); }

Perm Replica::GrantOf(uint64_t block, LinkId child) const {
  const ChildIndex i = children_.Find(child);
  return i < 0 ? Perm::kNone : StateOf(block).GrantOf(i);
}

bool Replica::IsDirty(uint64_t block) const {
  if (!table_) return false;
  BlockTable::Locked set = table_->Lock(block);
  BlockTable::Slot* s = set.Find(block);
  return s && s->dirty;
}

std::optional<Bytes> Replica::CopyOf(uint64_t block) const {
  Bytes b;
  if (!GetCopy(block, &b)) return std::nullopt;
  return b;
}

size_t Replica::copies() const {
  if (!table_) return 0;
  size_t n = 0;
  table_->ForEach([&](BlockTable::Locked&, BlockTable::Slot& s) { n += !s.empty() && s.valid; });
  return n;
}

// Both follow the lease this node gives, which joining cuts to its parent's.
uint32_t Replica::heartbeat_ms() const {
  return cfg_.heartbeat_ms ? cfg_.heartbeat_ms : std::max<uint32_t>(hb_ttl_ms_ / 4, 10);
}

uint32_t Replica::margin_ms() const {
  return cfg_.lease_margin_ms ? cfg_.lease_margin_ms : std::max<uint32_t>(hb_ttl_ms_ / 10, 100);
}

ReplicaStats Replica::stats(Time now) const {
  ReplicaStats s;
  s.valid = LeaseValid(now);
  s.ms_left = cfg_.is_root ? 0 : parent_lease_.ms_left(now);
  s.ms_since_renewal = parent_lease_.ms_since_renewal(now);
  uint64_t failed_mask = 0;
  for (const auto& [child, until] : child_leases_.failed()) failed_mask |= children_.MaskOf(child);
  s.frozen_blocks = children_.GrantsOf(failed_mask);
  s.failed_children = child_leases_.failed_total();
  s.rejoins = rejoins_;
  s.recovered = recovered_;
  s.recovery_lost = recovery_lost_;
  s.claims_served = claims_served_;
  s.revalidated = revalidated_;
  s.sync_write_throughs = write_throughs_;
  s.kernel_page_drops = kernel_page_drops_;
  s.kernel_full_drops = kernel_full_drops_;
  s.grants = children_.total_grants();
  s.children = child_leases_.Live().size();
  return s;
}

}  // namespace vshare
