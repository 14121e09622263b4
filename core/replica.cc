#include "core/replica.h"

#include <algorithm>
#include <utility>

#include "core/log.h"

namespace vshare {

namespace {

Perm FromWire(std::optional<WirePerm> p, Perm fallback) {
  return p ? static_cast<Perm>(static_cast<uint8_t>(*p)) : fallback;
}
WirePerm ToWire(Perm p) { return static_cast<WirePerm>(static_cast<uint16_t>(p)); }

uint32_t MsUntil(Time from, Time to) {
  if (to <= from) return 0;
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(to - from).count();
  return static_cast<uint32_t>(std::min<int64_t>(ms, UINT32_MAX));
}

}  // namespace

Replica::Replica(ReplicaConfig cfg, BlockData* data)
    : cfg_(std::move(cfg)), data_(data), connected_(cfg_.is_root) {}

BlockState& Replica::State(uint64_t block) {
  auto it = states_.find(block);
  if (it == states_.end())
    it = states_.emplace(block, BlockState{cfg_.is_root ? Perm::kWrite : Perm::kNone, 0, false, {}}).first;
  return it->second;
}

BlockState Replica::StateOf(uint64_t block) const {
  auto it = states_.find(block);
  if (it != states_.end()) return it->second;
  return BlockState{cfg_.is_root ? Perm::kWrite : Perm::kNone, 0, false, {}};
}

// The permission this node may use now: the root's never lapses; anyone
// else's lapses with the TTL of the grant that gave it.
Perm Replica::Held(uint64_t block, Time now) const {
  if (cfg_.is_root) return Perm::kWrite;
  auto st = states_.find(block);
  auto ex = expiry_.find(block);
  if (st == states_.end() || ex == expiry_.end() || now >= ex->second) return Perm::kNone;
  return st->second.held;
}

uint32_t Replica::TtlLeft(uint64_t block, Time now) const {
  if (cfg_.is_root) return cfg_.grant_ttl_ms;
  auto ex = expiry_.find(block);
  return ex == expiry_.end() ? 0 : MsUntil(now, ex->second);
}

Message Replica::Upstream(const Job& j, IoOp op, uint64_t block, Perm perm) const {
  Message up;
  up.opcode = Opcode::kIoRequest;
  up.io_op = op;
  up.volume_id = parent_volume_id_;  // our ID mapped back (Example One, step 6)
  up.block_num = block;
  up.permissions = ToWire(perm);
  up.flags = j.flags & msg_flags::kForceSync;
  // A local request starts with the full hop budget; a forwarded one spends
  // one (callers refuse a forwarded request that has none left).
  up.hops_left = static_cast<uint8_t>(j.from == kLocal ? cfg_.max_hops : j.hops - 1);
  up.originator = j.from == kLocal ? cfg_.self : j.originator;
  return up;
}

Message Replica::ErrorReply(uint64_t xid, WireStatus st, std::optional<ParamType> param) {
  Message r;
  r.opcode = Opcode::kErrReply;
  r.xid = xid;
  r.status = st;
  if (param) r.err_param = static_cast<uint16_t>(*param);
  return r;
}

Message Replica::ReplyFor(uint64_t xid) const {
  Message r;
  r.opcode = Opcode::kOkReply;
  r.xid = xid;
  return r;
}

void Replica::SendToChild(LinkId child, Message m) {
  outbox_.push_back(Outgoing{Outgoing::Kind::kSend, false, child, 0, std::move(m)});
}

void Replica::SendToParent(Message m) {
  outbox_.push_back(Outgoing{Outgoing::Kind::kSend, true, 0, 0, std::move(m)});
}

uint64_t Replica::CallParent(Message m, Call c) {
  uint64_t id = next_call_++;
  calls_.emplace(id, c);
  outbox_.push_back(Outgoing{Outgoing::Kind::kCall, true, 0, id, std::move(m)});
  return id;
}

std::vector<Outgoing> Replica::TakeOutbox() { return std::exchange(outbox_, {}); }
std::vector<LocalDone> Replica::TakeLocalDone() { return std::exchange(local_done_, {}); }

void Replica::CompleteLocal(uint64_t op, Status st, std::vector<uint8_t> data) {
  auto it = sync_flushes_.find(op);
  if (it == sync_flushes_.end()) {
    local_done_.push_back({op, std::move(st), std::move(data)});
    return;
  }
  const uint64_t id = it->second;
  sync_flushes_.erase(it);
  SyncOp& s = syncs_.at(id);
  --s.pending;
  if (!st.ok() && s.error.ok()) s.error = st;
  // Progress is made by whoever is running: a later event looks at it.
  if (s.pending == 0) pending_sync_progress_.push_back(id);
}

uint64_t Replica::SyncLocal(Time now) {
  uint64_t op = next_local_++;
  StartSync(kLocal, 0, op, now);
  return op;
}

void Replica::StartSync(LinkId from, uint64_t reply_xid, uint64_t local_op, Time now) {
  const uint64_t id = next_sync_++;
  SyncOp& s = syncs_[id];
  s.from = from;
  s.reply_xid = reply_xid;
  s.local_op = local_op;
  std::vector<uint64_t> dirty = data_->DirtyBlocks();
  std::vector<uint64_t> ops;
  for (size_t i = 0; i < dirty.size(); ++i) {
    uint64_t op = next_local_++;
    sync_flushes_[op] = id;
    ops.push_back(op);
  }
  s.pending = dirty.size();
  for (size_t i = 0; i < dirty.size(); ++i) FlushLocalAs(ops[i], dirty[i], Perm::kRead, now);
  RunSyncProgress(now);
  if (syncs_.count(id) && syncs_[id].pending == 0 && !syncs_[id].sent_up) SyncProgress(id, now);
}

void Replica::RunSyncProgress(Time now) {
  while (!pending_sync_progress_.empty()) {
    uint64_t id = pending_sync_progress_.back();
    pending_sync_progress_.pop_back();
    if (syncs_.count(id)) SyncProgress(id, now);
  }
}

void Replica::SyncProgress(uint64_t id, Time now) {
  SyncOp& s = syncs_.at(id);
  if (s.pending > 0 || s.sent_up) return;
  if (!s.error.ok()) return FinishSync(id, s.error);
  if (cfg_.is_root) return FinishSync(id, cfg_.root_sync ? cfg_.root_sync() : Status::Ok());
  s.sent_up = true;
  Message up;
  up.opcode = Opcode::kIoRequest;
  up.io_op = IoOp::kFlush;
  up.volume_id = parent_volume_id_;
  up.originator = cfg_.self;
  up.hops_left = cfg_.max_hops;
  Call c{CallKind::kSync};
  c.sent = now;
  c.sync = id;
  CallParent(std::move(up), c);
}

void Replica::FinishSync(uint64_t id, Status st) {  // by value: it may live in syncs_
  SyncOp s = syncs_.at(id);
  syncs_.erase(id);
  if (s.from == kLocal) {
    local_done_.push_back({s.local_op, st, {}});
  } else if (st.ok()) {
    SendToChild(s.from, ReplyFor(s.reply_xid));
  } else {
    SendToChild(s.from, ErrorReply(s.reply_xid, WireStatus::kBusy));
  }
}

void Replica::Finish(const Job& j, const Message& reply) {
  if (j.from == kLocal) {
    CompleteLocal(j.local_op, Status::Ok());
    return;
  }
  Message r = reply;
  r.xid = j.reply_xid;
  SendToChild(j.from, std::move(r));
}

void Replica::Fail(const Job& j, WireStatus st, const std::string& why) {
  if (j.from == kLocal) {
    // The application sees EIO: BUSY here means the parent could not be
    // reached or refused, not a lock someone holds.
    CompleteLocal(j.local_op, Status::IOError(why + " (" + WireStatusName(st) + ")"));
    return;
  }
  SendToChild(j.from, ErrorReply(j.reply_xid, st));
}

// ---- Children's messages ----

void Replica::OnChildMessage(LinkId child, const Message& m, Time now) {
  HandleChildMessage(child, m, now);
  RunSyncProgress(now);
}

void Replica::OnParentMessage(const Message& m, Time now) {
  HandleParentMessage(m, now);
  RunSyncProgress(now);
}

void Replica::OnReply(uint64_t call_id, const Status& st, const Message& reply, Time now) {
  HandleReply(call_id, st, reply, now);
  RunSyncProgress(now);
}

void Replica::HandleChildMessage(LinkId child, const Message& m, Time now) {
  switch (m.opcode) {
    case Opcode::kConnect:
      return HandleConnect(child, m, now);
    case Opcode::kIoRequest:
      return HandleIo(child, m, now);
    case Opcode::kHeartbeat: {
      Message r = ReplyFor(m.xid);
      r.hb_ttl_ms = cfg_.hb_ttl_ms;
      return SendToChild(child, std::move(r));
    }
    case Opcode::kDisconnect:
      OnChildGone(child);
      return SendToChild(child, ReplyFor(m.xid));
    default:  // parent-to-child opcodes have no business here
      return SendToChild(child, ErrorReply(m.xid, WireStatus::kInvalidHeader));
  }
}

void Replica::HandleConnect(LinkId child, const Message& m, Time) {
  if (!m.volume_name) return SendToChild(child, ErrorReply(m.xid, WireStatus::kBadParamValue, ParamType::kVolumeName));
  if (*m.volume_name != cfg_.volume_name) return SendToChild(child, ErrorReply(m.xid, WireStatus::kNoSuchVolume));
  // Our own join came back round: the parent chain is a cycle.
  if (m.originator == cfg_.self) return SendToChild(child, ErrorReply(m.xid, WireStatus::kLoopDetected));
  if (connected_) return ReplyConnect(child, m.xid);
  if (m.hops_left == 0) return SendToChild(child, ErrorReply(m.xid, WireStatus::kLoopDetected));
  // Example One, step 2: learn the volume from our own parent first.
  waiting_connects_.push_back({child, m.xid});
  ConnectUpward(m.originator, static_cast<uint8_t>(m.hops_left - 1));
}

void Replica::Start(Time) {
  if (!connected_) ConnectUpward(cfg_.self, cfg_.max_hops);
}

void Replica::ConnectUpward(const Originator& originator, uint8_t hops) {
  if (connecting_ || connected_ || cfg_.is_root) return;
  connecting_ = true;
  Message up;
  up.opcode = Opcode::kConnect;
  up.volume_name = cfg_.volume_name;
  up.protocol_version = kCurrentProtocolVersion;
  up.originator = originator;
  up.hops_left = hops;
  CallParent(std::move(up), Call{CallKind::kConnect});
}

void Replica::ReplyConnect(LinkId child, uint64_t xid) {
  Message r = ReplyFor(xid);
  r.volume_name = cfg_.volume_name;
  r.volume_id = cfg_.volume_id;  // our own number: the child's requests map back through us
  r.hb_ttl_ms = cfg_.hb_ttl_ms;
  r.connect_flags = cfg_.is_root ? connect_flags::kIsRoot : connect_flags::kIsProxy;
  r.volume_size = cfg_.volume_size;
  r.block_size = cfg_.block_size;
  r.protocol_version = kCurrentProtocolVersion;
  SendToChild(child, std::move(r));
}

void Replica::HandleIo(LinkId child, const Message& m, Time now) {
  Job j;
  j.from = child;
  j.reply_xid = m.xid;
  j.flags = m.flags;
  j.hops = m.hops_left;
  j.originator = m.originator;
  auto refuse = [&](WireStatus st, std::optional<ParamType> param) { SendToChild(child, ErrorReply(m.xid, st, param)); };
  if (!connected_ || !m.volume_id || *m.volume_id != cfg_.volume_id) return refuse(WireStatus::kNoSuchVolume, std::nullopt);
  if (!m.io_op) return refuse(WireStatus::kBadParamValue, ParamType::kIoOp);
  if (*m.io_op == IoOp::kFlush && !m.block_num && !m.data) {  // a sync barrier
    StartSync(child, m.xid, 0, now);
    return;
  }
  if (!m.block_num) return refuse(WireStatus::kBadParamValue, ParamType::kBlockNum);
  if (*m.block_num >= block_count()) return refuse(WireStatus::kOutOfRange, ParamType::kBlockNum);
  if (m.originator == cfg_.self) return refuse(WireStatus::kLoopDetected, std::nullopt);
  j.op = *m.io_op;
  switch (j.op) {
    case IoOp::kGet:
      j.want = std::max(FromWire(m.permissions, Perm::kRead), Perm::kRead);
      break;
    case IoOp::kLock:
      j.want = FromWire(m.permissions, Perm::kWrite);
      break;
    case IoOp::kPut:
    case IoOp::kFlush:
      if (!m.data || m.data->size() != cfg_.block_size) return refuse(WireStatus::kBadParamLength, ParamType::kData);
      j.data = m.data;
      j.want = Perm::kWrite;
      j.keep = FromWire(m.permissions, Perm::kNone);
      break;
    default:  // RECOVER and GET_COOKIES arrive with recovery and security
      return refuse(WireStatus::kBadParamValue, ParamType::kIoOp);
  }
  Enqueue(*m.block_num, std::move(j), now);
}

void Replica::OnChildGone(LinkId child) {
  for (auto& [block, st] : states_)
    st = Step(st, Event{Event::Kind::kRelease, child, Perm::kNone}).next;
}

// ---- Local access ----

uint64_t Replica::StartLocal(uint64_t block, Perm want, Time now) {
  Job j;
  j.local_op = next_local_++;
  j.op = IoOp::kGet;
  j.want = want;
  j.hops = cfg_.max_hops;
  j.originator = cfg_.self;
  uint64_t id = j.local_op;
  Enqueue(block, std::move(j), now);
  return id;
}

uint64_t Replica::ReadLocal(uint64_t block, Time now) {
  Job j;
  j.local_op = next_local_++;
  j.local = LocalKind::kRead;
  j.op = IoOp::kGet;
  j.want = Perm::kRead;
  j.hops = cfg_.max_hops;
  j.originator = cfg_.self;
  uint64_t id = j.local_op;
  Enqueue(block, std::move(j), now);
  return id;
}

uint64_t Replica::WriteLocal(uint64_t block, size_t offset, std::vector<uint8_t> data, Time now) {
  uint64_t id = next_local_++;
  if (offset + data.size() > cfg_.block_size) {
    CompleteLocal(id, Status::InvalidArgument("write past the end of block " + std::to_string(block)));
    return id;
  }
  Job j;
  j.local_op = id;
  j.local = LocalKind::kWrite;
  j.op = IoOp::kGet;
  j.want = Perm::kWrite;
  j.offset = offset;
  j.data = std::move(data);
  j.hops = cfg_.max_hops;
  j.originator = cfg_.self;
  Enqueue(block, std::move(j), now);
  return id;
}

uint64_t Replica::PutLocal(uint64_t block, std::vector<uint8_t> data, Time now) {
  Job j;
  j.local_op = next_local_++;
  j.op = IoOp::kPut;
  j.want = Perm::kWrite;
  j.data = std::move(data);
  j.hops = cfg_.max_hops;
  j.originator = cfg_.self;
  uint64_t id = j.local_op;
  Enqueue(block, std::move(j), now);
  return id;
}

uint64_t Replica::FlushLocal(uint64_t block, Perm keep, Time now) {
  return FlushLocalAs(next_local_++, block, keep, now);
}

uint64_t Replica::FlushLocalAs(uint64_t id_to_use, uint64_t block, Perm keep, Time now) {
  Job j;
  j.local_op = id_to_use;
  j.op = IoOp::kFlush;
  j.keep = keep;
  j.hops = cfg_.max_hops;
  j.originator = cfg_.self;
  std::vector<uint8_t> bytes;
  uint64_t id = j.local_op;
  if (!data_->IsDirty(block)) {  // nothing newer here than upstream
    CompleteLocal(id, Status::Ok());
    return id;
  }
  if (!data_->Get(block, &bytes)) {
    CompleteLocal(id, Status::NotFound("no copy of block " + std::to_string(block) + " to flush"));
    return id;
  }
  j.data = std::move(bytes);
  Enqueue(block, std::move(j), now);
  return id;
}

// ---- The per-block queue ----

void Replica::Enqueue(uint64_t block, Job job, Time now) {
  runs_[block].jobs.push_back(std::move(job));
  Pump(block, now);
}

void Replica::Pump(uint64_t block, Time now) {
  auto it = runs_.find(block);
  if (it == runs_.end()) return;
  BlockRun& run = it->second;
  if (!connected_) return;  // Start() or a child's CONNECT is under way
  while (!run.jobs.empty() && run.acks == 0 && !run.waiting_parent && !run.recall) {
    if (!Advance(block, run.jobs.front(), now)) return;
    run.jobs.pop_front();
  }
  if (run.jobs.empty() && run.acks == 0 && !run.waiting_parent && !run.recall) runs_.erase(it);
}

bool Replica::Advance(uint64_t block, Job& j, Time now) {
  if (j.op == IoOp::kPut) return AdvancePut(block, j, now);
  if (j.op == IoOp::kFlush) return AdvanceFlush(block, j, now);
  if (j.op == IoOp::kLock && j.want == Perm::kNone) {  // giving permission back
    if (j.from != kLocal) State(block) = Step(State(block), Event{Event::Kind::kRelease, j.from, Perm::kNone}).next;
    Finish(j, ReplyFor(0));
    return true;
  }
  BlockState now_state = State(block);
  now_state.held = Held(block, now);
  Transition t = Step(now_state, Event{Event::Kind::kRequest, j.from, j.want});
  const Action& first = t.actions.front();
  switch (first.kind) {
    case Action::Kind::kRefuse:
      Fail(j, WireStatus::kInRecovery, "block " + std::to_string(block) + " is frozen");
      return true;
    case Action::Kind::kAskParent:
      if (j.hops == 0) {
        Fail(j, WireStatus::kLoopDetected, "hops ran out");
        return true;
      }
      AskParent(block, j, now);
      return false;
    case Action::Kind::kInvalidate:
    case Action::Kind::kWait:
      for (const Action& a : t.actions)
        if (a.kind == Action::Kind::kInvalidate) Invalidate(block, a.link, a.perm, now);
      return false;
    case Action::Kind::kGrant:
      break;
  }
  std::vector<uint8_t> bytes;
  const bool wants_data = j.op == IoOp::kGet && j.from != kLocal;
  if ((wants_data || j.from == kLocal) && !data_->Get(block, &bytes)) {
    if (cfg_.is_root) {
      Fail(j, WireStatus::kBusy, "cannot read block " + std::to_string(block) + " from the store");
      return true;
    }
    AskParent(block, j, now);  // permission without a copy: fetch the data
    return false;
  }
  BlockState& st = State(block);
  st.grants = t.next.grants;
  if (j.from == kLocal) {
    LocalDone done{j.local_op, Status::Ok(), {}};
    if (j.local == LocalKind::kRead) {
      done.data = std::move(bytes);
    } else if (j.local == LocalKind::kWrite) {
      bytes.resize(cfg_.block_size);
      std::copy(j.data->begin(), j.data->end(), bytes.begin() + static_cast<long>(j.offset));
      data_->Put(block, bytes, /*dirty=*/!cfg_.is_root);
      ++st.version;
    }
    CompleteLocal(done.op, done.status, std::move(done.data));
    return true;
  }
  Message r = ReplyFor(j.reply_xid);
  r.volume_id = cfg_.volume_id;
  r.block_num = block;
  r.permissions = ToWire(j.want);
  r.ttl_ms = TtlLeft(block, now);
  r.hb_ttl_ms = cfg_.hb_ttl_ms;
  r.version = st.version;
  if (wants_data) r.data = std::move(bytes);
  Finish(j, r);
  return true;
}

void Replica::AskParent(uint64_t block, const Job& j, Time now) {
  std::vector<uint8_t> ignored;
  const bool have_copy = Held(block, now) >= Perm::kRead && data_->Get(block, &ignored);
  // With a valid copy only the permission is missing: LOCK. Otherwise GET.
  Message up = Upstream(j, have_copy ? IoOp::kLock : IoOp::kGet, block, std::max(j.want, Perm::kRead));
  CallParent(std::move(up), Call{CallKind::kUpstream, block, 0, Perm::kNone, now});
  runs_[block].waiting_parent = true;
}

void Replica::Invalidate(uint64_t block, LinkId child, Perm to, Time now) {
  Message m;
  m.opcode = Opcode::kInvalidate;
  m.volume_id = cfg_.volume_id;
  m.block_num = block;
  m.permissions = ToWire(to);
  m.originator = cfg_.self;
  uint64_t id = next_call_++;
  calls_.emplace(id, Call{CallKind::kInvalidate, block, child, to, now});
  outbox_.push_back(Outgoing{Outgoing::Kind::kCall, false, child, id, std::move(m)});
  ++runs_[block].acks;
}

// PUT: a write-through. Every other copy below this node goes first, then
// the data travels up to the root; the writer keeps no permission.
bool Replica::AdvancePut(uint64_t block, Job& j, Time now) {
  if (j.stage == 0) {
    j.stage = 1;
    bool sent = false;
    for (const Grant& g : State(block).grants)
      if (g.child != j.from && g.perm > Perm::kNone) {
        Invalidate(block, g.child, Perm::kNone, now);
        sent = true;
      }
    if (sent) return false;
  }
  auto release_writer = [&] {
    if (j.from != kLocal) State(block) = Step(State(block), Event{Event::Kind::kRelease, j.from, Perm::kNone}).next;
  };
  if (j.stage == 1) {
    if (cfg_.is_root) {
      data_->Put(block, *j.data, false);
      BlockState& st = State(block);
      ++st.version;
      release_writer();
      Message r = ReplyFor(j.reply_xid);
      r.volume_id = cfg_.volume_id;
      r.block_num = block;
      r.ttl_ms = cfg_.grant_ttl_ms;
      r.hb_ttl_ms = cfg_.hb_ttl_ms;
      r.version = st.version;
      Finish(j, r);
      return true;
    }
    if (j.hops == 0) {
      Fail(j, WireStatus::kLoopDetected, "hops ran out");
      return true;
    }
    // Our own copy is about to be stale.
    data_->Drop(block);
    expiry_.erase(block);
    State(block).held = Perm::kNone;
    Message up = Upstream(j, IoOp::kPut, block, Perm::kWrite);
    up.data = j.data;
    j.sent = now;
    CallParent(std::move(up), Call{CallKind::kUpstream, block, 0, Perm::kNone, now});
    runs_[block].waiting_parent = true;
    j.stage = 2;
    return false;
  }
  // Stage 2: the parent answered.
  const Message& up = *j.upstream_reply;
  if (up.opcode != Opcode::kOkReply) {
    Fail(j, up.status.value_or(WireStatus::kBusy), "the parent refused the PUT");
    return true;
  }
  release_writer();
  Message r = ReplyFor(j.reply_xid);
  r.volume_id = cfg_.volume_id;
  r.block_num = block;
  if (up.ttl_ms) r.ttl_ms = MsUntil(now, j.sent + std::chrono::milliseconds(*up.ttl_ms));
  r.hb_ttl_ms = cfg_.hb_ttl_ms;
  r.version = up.version;
  Finish(j, r);
  return true;
}

// FLUSH: a WRITE holder sends its data toward the root and keeps `keep`.
bool Replica::AdvanceFlush(uint64_t block, Job& j, Time now) {
  if (j.stage == 0) {
    if (j.from != kLocal && State(block).GrantOf(j.from) != Perm::kWrite) {
      // The sender's WRITE was already recalled, and its data came back with
      // the recall; this older copy must not overwrite what followed.
      Message r = ReplyFor(j.reply_xid);
      r.permissions = WirePerm::kNone;
      Finish(j, r);
      return true;
    }
    if (j.from == kLocal) {
      // Nothing newer here than upstream any more (a recall took it up
      // since the flush was asked for): done.
      if (!data_->IsDirty(block)) {
        Finish(j, ReplyFor(0));
        return true;
      }
      if (Held(block, now) != Perm::kWrite) {
        Fail(j, WireStatus::kBusy, "no WRITE permission to flush block " + std::to_string(block));
        return true;
      }
      // The bytes as they are now: writes queued ahead of this flush have
      // been applied since it was asked for.
      std::vector<uint8_t> bytes;
      data_->Get(block, &bytes);
      j.data = std::move(bytes);
    }
    data_->Put(block, *j.data, /*dirty=*/!cfg_.is_root);
    BlockState& st = State(block);
    if (j.from != kLocal) {
      ++st.version;
      st = Step(st, Event{Event::Kind::kRelease, j.from, j.keep}).next;
    }
    if (cfg_.is_root) {
      Finish(j, ReplyFor(j.reply_xid));
      return true;
    }
    if (j.hops == 0) {
      Fail(j, WireStatus::kLoopDetected, "hops ran out");
      return true;
    }
    // What this node keeps must cover what its children (and it) still hold.
    Perm mine = j.from == kLocal ? j.keep : (cfg_.keep_copies ? Perm::kRead : Perm::kNone);
    for (const Grant& g : st.grants) mine = std::max(mine, g.perm);
    j.want = mine;
    Message up = Upstream(j, IoOp::kFlush, block, mine);
    up.data = j.data;
    j.sent = now;
    CallParent(std::move(up), Call{CallKind::kUpstream, block, 0, Perm::kNone, now});
    runs_[block].waiting_parent = true;
    j.stage = 1;
    return false;
  }
  const Message& up = *j.upstream_reply;
  if (up.opcode != Opcode::kOkReply) {
    Fail(j, up.status.value_or(WireStatus::kBusy), "the parent refused the FLUSH");
    return true;
  }
  BlockState& st = State(block);
  // The parent may leave us less than we asked to keep (a flush it found
  // stale, because a recall had already taken our data).
  st.held = up.permissions ? std::min(j.want, FromWire(up.permissions, Perm::kNone)) : j.want;
  j.want = st.held;
  if (up.ttl_ms) expiry_[block] = j.sent + std::chrono::milliseconds(*up.ttl_ms);
  if (j.want == Perm::kNone) {
    data_->Drop(block);
    expiry_.erase(block);
  } else {
    data_->MarkClean(block);
  }
  Finish(j, ReplyFor(j.reply_xid));
  return true;
}

// ---- The parent's messages ----

void Replica::HandleParentMessage(const Message& m, Time now) {
  if (m.opcode == Opcode::kInvalidate && m.block_num) {
    if (m.volume_id && *m.volume_id != parent_volume_id_) return SendToParent(ErrorReply(m.xid, WireStatus::kNoSuchVolume));
    BlockRun& run = runs_[*m.block_num];
    run.recall = Recall{m.xid, FromWire(m.permissions, Perm::kNone), false};
    return ServeRecall(*m.block_num, now);
  }
  if (m.opcode == Opcode::kPush && m.block_num && m.data && m.data->size() == cfg_.block_size && m.ttl_ms) {
    // Unsolicited data: kept as a READ copy unless the block is busy here.
    const uint64_t block = *m.block_num;
    if (!runs_.count(block) && State(block).held <= Perm::kRead) {
      data_->Put(block, *m.data, false);
      State(block).held = Perm::kRead;
      expiry_[block] = now + std::chrono::milliseconds(*m.ttl_ms / 2);  // no round trip to go by: halve it
    }
    if (m.xid) SendToParent(ReplyFor(m.xid));
    return;
  }
  SendToParent(ErrorReply(m.xid, WireStatus::kBadParamValue));
}

void Replica::ServeRecall(uint64_t block, Time now) {
  BlockRun& run = runs_[block];
  Recall& rc = *run.recall;
  bool had_children = false;
  if (!rc.recalled_children) {
    rc.recalled_children = true;
    for (const Grant& g : State(block).grants)
      if (g.perm > rc.to) {
        Invalidate(block, g.child, rc.to, now);
        had_children = true;
      }
    rc.invalidated_children = had_children;
  }
  if (run.acks > 0) return;
  BlockState& st = State(block);
  Message r = ReplyFor(rc.reply_xid);
  if (data_->IsDirty(block)) {
    // Dirty data goes up with the reply: no acknowledged write is lost.
    std::vector<uint8_t> bytes;
    if (data_->Get(block, &bytes)) {
      r.data = std::move(bytes);
      r.version = st.version;
    }
    data_->MarkClean(block);
  }
  if (rc.invalidated_children) {  // a proxy names what it answers for (Example Three, step 6)
    r.volume_id = parent_volume_id_;
    r.block_num = block;
  }
  st.held = std::min(st.held, rc.to);
  if (rc.to == Perm::kNone) {
    data_->Drop(block);
    expiry_.erase(block);
  }
  run.recall.reset();
  SendToParent(std::move(r));
  Pump(block, now);
}

// ---- Replies to our calls ----

void Replica::HandleReply(uint64_t call_id, const Status& st, const Message& reply, Time now) {
  auto it = calls_.find(call_id);
  if (it == calls_.end()) return;
  const Call call = it->second;
  calls_.erase(it);
  const bool ok = st.ok() && reply.opcode == Opcode::kOkReply;

  if (call.kind == CallKind::kConnect) {
    connecting_ = false;
    if (ok && reply.volume_id) {
      connected_ = true;
      parent_volume_id_ = *reply.volume_id;
      if (reply.volume_size) cfg_.volume_size = *reply.volume_size;
      if (reply.block_size) cfg_.block_size = *reply.block_size;
      if (reply.hb_ttl_ms) cfg_.hb_ttl_ms = *reply.hb_ttl_ms;  // passed down unchanged
    } else {
      connect_error_ = !st.ok() ? st.message()
                       : reply.status ? std::string("the parent answered ") + WireStatusName(*reply.status)
                                      : "the parent refused";
      LogWarning("volume " + cfg_.volume_name + ": CONNECT to the parent failed: " + connect_error_);
    }
    if (connected_) {  // requests made while connecting may go now
      std::vector<uint64_t> blocks;
      for (const auto& [block, run] : runs_) blocks.push_back(block);
      for (uint64_t b : blocks) Pump(b, now);
    }
    for (const PendingConnect& pc : std::exchange(waiting_connects_, {})) {
      if (connected_) {
        ReplyConnect(pc.child, pc.xid);
      } else {
        SendToChild(pc.child, ErrorReply(pc.xid, st.ok() ? reply.status.value_or(WireStatus::kNoSuchVolume) : WireStatus::kBusy));
      }
    }
    return;
  }

  if (call.kind == CallKind::kSync) {
    if (syncs_.count(call.sync))
      FinishSync(call.sync, ok ? Status::Ok()
                               : Status::IOError("sync barrier failed at the parent: " +
                                                 (st.ok() ? Describe(reply) : st.ToString())));
    return;
  }

  const uint64_t block = call.block;
  BlockRun& run = runs_[block];

  if (call.kind == CallKind::kInvalidate) {
    --run.acks;
    if (!ok)
      LogWarning("volume " + cfg_.volume_name + ": INVALIDATE of block " + std::to_string(block) + " at child " +
                 std::to_string(call.child) + " failed (" + (st.ok() ? Describe(reply) : st.ToString()) +
                 "); its grant is dropped");
    BlockState& bs = State(block);
    bs = Step(bs, Event{Event::Kind::kInvalidateAck, call.child, ok ? call.to : Perm::kNone}).next;
    if (ok && reply.data && reply.data->size() == cfg_.block_size) {
      data_->Put(block, *reply.data, /*dirty=*/!cfg_.is_root);  // a child's write, recalled
      bs.version = std::max(bs.version + 1, reply.version.value_or(0));
    }
    if (run.recall) ServeRecall(block, now);
    else Pump(block, now);
    return;
  }

  // kUpstream: the reply to the head job's request.
  run.waiting_parent = false;
  if (run.jobs.empty()) return Pump(block, now);
  Job& j = run.jobs.front();
  if (j.op == IoOp::kPut || j.op == IoOp::kFlush) {
    if (!st.ok()) {
      Fail(j, WireStatus::kBusy, "parent unreachable: " + st.ToString());
      run.jobs.pop_front();
      return Pump(block, now);
    }
    j.upstream_reply = reply;
    return Pump(block, now);
  }
  if (!ok) {
    Fail(j, st.ok() ? reply.status.value_or(WireStatus::kBusy) : WireStatus::kBusy,
         st.ok() ? "the parent refused: " + Describe(reply) : "parent unreachable: " + st.ToString());
    run.jobs.pop_front();
    return Pump(block, now);
  }
  BlockState& bs = State(block);
  bs.held = FromWire(reply.permissions, Perm::kRead);
  // Counted from when we asked: the parent's own grant cannot end sooner.
  expiry_[block] = call.sent + std::chrono::milliseconds(reply.ttl_ms.value_or(0));
  if (reply.data && reply.data->size() == cfg_.block_size) data_->Put(block, *reply.data, false);
  if (reply.version) bs.version = *reply.version;
  Pump(block, now);
}

}  // namespace vshare
