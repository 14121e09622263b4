#include "core/replica.h"

#include <algorithm>
#include <random>
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

uint64_t NewEpoch() {
  std::random_device rd;
  return 1 + rd() % ((1u << 24) - 1);  // 24 bits, never 0
}

}  // namespace

Replica::Replica(ReplicaConfig cfg, BlockData* data)
    : cfg_(std::move(cfg)),
      data_(data),
      connected_(cfg_.is_root),
      version_epoch_(cfg_.version_epoch ? cfg_.version_epoch : NewEpoch()) {}

void Replica::Changed(BlockState& st) {
  st.version = cfg_.is_root ? (version_epoch_ << kVersionCounterBits) | ++version_counter_ : 0;
}

BlockState& Replica::State(uint64_t block) {
  auto it = states_.find(block);
  if (it == states_.end())
    it = states_.emplace(block, BlockState{cfg_.is_root ? Perm::kWrite : Perm::kNone,
                                           cfg_.is_root ? version_epoch_ << kVersionCounterBits : 0, false, {}})
             .first;
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
  if (!LeaseValid(now)) return Perm::kNone;  // indeterminate until renewed
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
  if (m.opcode == Opcode::kOkReply && m.hb_ttl_ms) {
    // The child's lease may not outlast ours; the time granted is what we
    // wait for before acting on its failure.
    const uint32_t t = HbTtlFor(now_);
    if (t == 0) {
      m.hb_ttl_ms.reset();
    } else {
      m.hb_ttl_ms = t;
      if (child_flags_.count(child)) {  // live and joined
        Time& end = child_lease_end_[child];
        end = std::max(end, now_ + std::chrono::milliseconds(t));
      }
    }
  }
  outbox_.push_back(Outgoing{Outgoing::Kind::kSend, false, child, 0, std::move(m)});
}

void Replica::SendToParent(Message m) {
  outbox_.push_back(Outgoing{Outgoing::Kind::kSend, true, 0, 0, std::move(m)});
}

uint64_t Replica::CallParent(Message m, Call c) {
  if (c.sent == Time{}) c.sent = now_;
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
  now_ = now;
  uint64_t op = next_local_++;
  StartSync(kLocal, 0, op, now);
  return op;
}

void Replica::StartSync(LinkId from, uint64_t reply_xid, uint64_t local_op, Time now, bool drop) {
  const uint64_t id = next_sync_++;
  SyncOp& s = syncs_[id];
  s.from = from;
  s.reply_xid = reply_xid;
  s.local_op = local_op;
  s.drop = drop;
  s.forwarded.assign(forwarded_.begin(), forwarded_.end());
  if (from == kLocal && !drop && writes_lost_) {  // fsync reports a loss once, as the kernel does
    writes_lost_ = false;
    s.error = Status::IOError("writes made here were lost when the parent failed (see the log)");
  }
  if (drop) {
    // Every block held here goes back, dirty or not (a proxy's too: its
    // children's grants are untouched, so it keeps what they need).
    std::vector<uint64_t> held;
    for (const auto& [block, state] : states_)
      if (state.held > Perm::kNone || data_->IsDirty(block)) held.push_back(block);
    s.pending = held.size();
    std::vector<uint64_t> ops;
    for (size_t i = 0; i < held.size(); ++i) {
      ops.push_back(next_local_++);
      sync_flushes_[ops.back()] = id;
    }
    for (size_t i = 0; i < held.size(); ++i) {
      Job j;
      j.local_op = ops[i];
      j.local = LocalKind::kDrop;
      j.hops = cfg_.max_hops;
      j.originator = cfg_.self;
      Enqueue(held[i], std::move(j), now);
    }
    RunSyncProgress(now);
    if (syncs_.count(id) && syncs_[id].pending == 0) FinishSync(id, syncs_[id].error);
    return;
  }
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
  if (!s.error.ok() || s.drop) return FinishSync(id, s.error);
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
  if (st.ok() && s.from == kLocal && !s.drop && writes_lost_) {  // lost while the barrier ran
    writes_lost_ = false;
    st = Status::IOError("writes made here were lost when the parent failed (see the log)");
  }
  if (st.ok() && !s.drop)  // the barrier reached the root: what we forwarded is there now
    for (uint64_t b : s.forwarded) forwarded_.erase(b);
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

bool Replica::SyncIfForced(uint64_t block, const Job& j) {
  if (!(j.flags & msg_flags::kForceSync) || !cfg_.root_sync) return true;
  Status synced = cfg_.root_sync();
  if (!synced.ok()) Fail(j, WireStatus::kBusy, "cannot make block " + std::to_string(block) + " durable: " + synced.ToString());
  return synced.ok();
}

// ---- Children's messages ----

void Replica::OnChildMessage(LinkId child, const Message& m, Time now) {
  now_ = now;
  HandleChildMessage(child, m, now);
  RunSyncProgress(now);
}

void Replica::OnParentMessage(const Message& m, Time now) {
  now_ = now;
  HandleParentMessage(m, now);
  RunSyncProgress(now);
}

void Replica::OnReply(uint64_t call_id, const Status& st, const Message& reply, Time now) {
  now_ = now;
  HandleReply(call_id, st, reply, now);
  RunSyncProgress(now);
}

void Replica::HandleChildMessage(LinkId child, const Message& m, Time now) {
  // A child found failed is written off until its link closes: nothing it
  // asks is served, and above all its lease is not renewed.
  if (failed_.count(child)) {
    if (m.opcode != Opcode::kOkReply && m.opcode != Opcode::kErrReply)
      SendToChild(child, ErrorReply(m.xid, WireStatus::kInRecovery));
    return;
  }
  switch (m.opcode) {
    case Opcode::kConnect:
      return HandleConnect(child, m, now);
    case Opcode::kIoRequest:
      return HandleIo(child, m, now);
    case Opcode::kForward:
      return HandleForward(child, m, now);
    case Opcode::kHeartbeat: {
      if (cfg_.is_root ? !HasAuthority(now) : !LeaseValid(now)) {  // ours lapsed: we cannot extend theirs
        if (!heartbeat_in_flight_ && connected_) SendHeartbeat(now);
        return SendToChild(child, ErrorReply(m.xid, WireStatus::kInRecovery));
      }
      Message r = ReplyFor(m.xid);
      r.hb_ttl_ms = cfg_.hb_ttl_ms;  // cut to what we have left in SendToChild
      return SendToChild(child, std::move(r));
    }
    case Opcode::kDisconnect:  // leaving on purpose: nothing to wait for
      LogInfo("volume " + cfg_.volume_name + ": child link " + std::to_string(child) + " left");
      departed_.insert(child);
      ReleaseChild(child);
      child_lease_end_.erase(child);
      child_flags_.erase(child);
      return SendToChild(child, ReplyFor(m.xid));
    default:  // parent-to-child opcodes have no business here
      return SendToChild(child, ErrorReply(m.xid, WireStatus::kInvalidHeader));
  }
}

void Replica::HandleConnect(LinkId child, const Message& m, Time now) {
  // A root without authority (a standby) takes no children: they try the
  // next place they know.
  if (!HasAuthority(now)) return SendToChild(child, ErrorReply(m.xid, WireStatus::kInRecovery));
  if (!m.volume_name) return SendToChild(child, ErrorReply(m.xid, WireStatus::kBadParamValue, ParamType::kVolumeName));
  if (*m.volume_name != cfg_.volume_name) return SendToChild(child, ErrorReply(m.xid, WireStatus::kNoSuchVolume));
  const uint32_t flags = m.connect_flags.value_or(connect_flags::kAsyncWrite);
  if ((flags & connect_flags::kSyncWrite) && (flags & connect_flags::kAsyncWrite))
    return SendToChild(child, ErrorReply(m.xid, WireStatus::kBadParamValue, ParamType::kConnectFlags));
  child_flags_[child] = flags;
  // Our own join came back round: the parent chain is a cycle.
  if (m.originator == cfg_.self) return SendToChild(child, ErrorReply(m.xid, WireStatus::kLoopDetected));
  if (connected_) return ReplyConnect(child, m.xid);
  if (m.hops_left == 0) return SendToChild(child, ErrorReply(m.xid, WireStatus::kLoopDetected));
  // Example One, step 2: learn the volume from our own parent first.
  waiting_connects_.push_back({child, m.xid});
  ConnectUpward(m.originator, static_cast<uint8_t>(m.hops_left - 1));
}

void Replica::Start(Time now) {
  now_ = now;
  if (!connected_) ConnectUpward(cfg_.self, cfg_.max_hops);
}

void Replica::ConnectUpward(const Originator& originator, uint8_t hops) {
  if (connecting_ || connected_ || cfg_.is_root) return;
  connecting_ = true;
  Message up;
  up.opcode = Opcode::kConnect;
  up.volume_name = cfg_.volume_name;
  up.protocol_version = kCurrentProtocolVersion;
  up.connect_flags = cfg_.connect_flags;
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
  if (!cfg_.is_root && !parent_address_.empty()) {  // where the child goes if we fail: our parent, then its
    std::vector<std::string> list{parent_address_};
    for (const std::string& a : upstream_)
      if (list.size() < 16) list.push_back(a);
    r.parent_list = std::move(list);
  }
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
  if (auto f = child_flags_.find(child); f != child_flags_.end() && (f->second & connect_flags::kSyncWrite))
    j.flags |= msg_flags::kForceSync;  // the child asked for sync writes when it joined
  j.hops = m.hops_left;
  j.originator = m.originator;
  auto refuse = [&](WireStatus st, std::optional<ParamType> param) { SendToChild(child, ErrorReply(m.xid, st, param)); };
  if (rejoining_) return refuse(WireStatus::kInRecovery, std::nullopt);  // our parent link is down
  // A root serves nothing without authority; in a takeover's grace, only
  // claims (RECOVERY_OP) and sync barriers.
  const bool barrier = m.io_op == IoOp::kFlush && !m.block_num && !m.data;
  const bool allowed_in_grace = (m.flags & msg_flags::kRecoveryOp) || barrier;
  if (cfg_.is_root && !(allowed_in_grace ? HasAuthority(now) : LeaseValid(now)))
    return refuse(WireStatus::kInRecovery, std::nullopt);
  if (!connected_ || !m.volume_id || *m.volume_id != cfg_.volume_id) return refuse(WireStatus::kNoSuchVolume, std::nullopt);
  if (!m.io_op) return refuse(WireStatus::kBadParamValue, ParamType::kIoOp);
  if (*m.io_op == IoOp::kFlush && !m.block_num && !m.data) {  // a sync barrier
    StartSync(child, m.xid, 0, now);
    return;
  }
  if (*m.io_op == IoOp::kLock && !m.block_num) {  // the writer lease
    if (m.originator == cfg_.self) return refuse(WireStatus::kLoopDetected, std::nullopt);
    LeaseJob job;
    job.from = child;
    job.reply_xid = m.xid;
    job.want = FromWire(m.permissions, Perm::kWrite);
    job.recovery = (m.flags & msg_flags::kRecoveryOp) != 0;
    job.hops = m.hops_left;
    job.originator = m.originator;
    lease_jobs_.push_back(job);
    return PumpLease();
  }
  if (!m.block_num) return refuse(WireStatus::kBadParamValue, ParamType::kBlockNum);
  if (*m.block_num >= block_count()) return refuse(WireStatus::kOutOfRange, ParamType::kBlockNum);
  if (m.originator == cfg_.self) return refuse(WireStatus::kLoopDetected, std::nullopt);
  j.op = *m.io_op;
  switch (j.op) {
    case IoOp::kGet:
      j.want = std::max(FromWire(m.permissions, Perm::kRead), Perm::kRead);
      j.version = m.version.value_or(0);
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
    case IoOp::kRecover:  // a node that lost its parent, claiming what it wrote
      if (!m.data || m.data->size() != cfg_.block_size) return refuse(WireStatus::kBadParamLength, ParamType::kData);
      j.data = m.data;
      j.want = Perm::kWrite;
      // Served at once, not queued: the requests in the block's queue may be
      // the ones waiting for this claim to be settled.
      ServeRecover(*m.block_num, j, now);
      return Pump(*m.block_num, now);
    default:  // GET_COOKIES arrives with security
      return refuse(WireStatus::kBadParamValue, ParamType::kIoOp);
  }
  Enqueue(*m.block_num, std::move(j), now);
}

void Replica::OnChildGone(LinkId child, Time now) {
  now_ = now;
  if (failed_.count(child) || departed_.erase(child)) return;
  ChildFailed(child, now, "its link closed");
}

void Replica::ReleaseChild(LinkId child) {
  for (auto& [block, st] : states_)
    st = Step(st, Event{Event::Kind::kRelease, child, Perm::kNone}).next;
  if (lease_children_.count(child)) {  // give its lease back, in turn with other lease requests
    LeaseJob job;
    job.from = child;
    job.want = Perm::kNone;
    lease_jobs_.push_back(job);
    PumpLease();
  }
}

// ---- Leases and failures ----

uint32_t Replica::heartbeat_ms() const {
  return cfg_.heartbeat_ms ? cfg_.heartbeat_ms : std::max<uint32_t>(cfg_.hb_ttl_ms / 4, 10);
}

uint32_t Replica::margin_ms() const {
  return cfg_.lease_margin_ms ? cfg_.lease_margin_ms : std::max<uint32_t>(cfg_.hb_ttl_ms / 10, 100);
}

uint32_t Replica::HbTtlFor(Time now) const {
  if (cfg_.is_root) {
    if (authority_until_ == Time::max()) return cfg_.hb_ttl_ms;
    return std::min(cfg_.hb_ttl_ms, MsUntil(now, authority_until_));  // a child's lease ends before ours
  }
  return LeaseValid(now) ? std::min(cfg_.hb_ttl_ms, MsUntil(now, lease_until_)) : 0;
}

void Replica::CallParentBare(Opcode op, Call c, std::chrono::milliseconds timeout) {
  Message m;
  m.opcode = op;
  m.originator = cfg_.self;
  m.hops_left = 1;
  CallParent(std::move(m), c);
  outbox_.back().timeout = timeout;
}

void Replica::SendHeartbeat(Time now) {
  if (cfg_.is_root || !connected_ || heartbeat_in_flight_) return;
  heartbeat_in_flight_ = true;
  next_heartbeat_ = now + std::chrono::milliseconds(heartbeat_ms());
  // One period to answer: three missed ones and the parent counts as failed,
  // before our lease (four periods) has lapsed.
  CallParentBare(Opcode::kHeartbeat, Call{CallKind::kHeartbeat}, std::chrono::milliseconds(heartbeat_ms()));
}

// Counted from when the request left: the parent's record of our lease
// cannot end sooner.
void Replica::Renewed(Time sent, uint32_t hb_ttl_ms, Time) {
  lease_until_ = std::max(lease_until_, sent + std::chrono::milliseconds(hb_ttl_ms));
  last_renewal_ = std::max(last_renewal_, sent);
  ever_renewed_ = true;
}

bool Replica::BlockedByFailed(uint64_t block, Perm want, LinkId except) const {
  if (failed_.empty()) return false;
  auto it = states_.find(block);
  if (it == states_.end()) return false;
  for (const Grant& g : it->second.grants)
    if (g.child != except && failed_.count(g.child) && g.perm > Perm::kNone &&
        (want == Perm::kWrite || g.perm == Perm::kWrite))
      return true;
  return false;
}

void Replica::ChildFailed(LinkId child, Time now, const std::string& why) {
  if (failed_.count(child)) return;
  ++failed_children_;
  // Its grants stand until its lease (plus the margin) is over, and then
  // one more lease: the grace period in which its children, having found
  // it failed, join elsewhere and claim back what they wrote (RECOVER).
  // (Counted from the end of its lease: its children find it failed by
  // then at the latest, since it stopped answering before.)
  Time until = now + std::chrono::milliseconds(cfg_.hb_ttl_ms);
  if (auto it = child_lease_end_.find(child); it != child_lease_end_.end()) {
    until = std::max(now, it->second + std::chrono::milliseconds(margin_ms() + cfg_.hb_ttl_ms));
    child_lease_end_.erase(it);
  }
  child_flags_.erase(child);
  failed_to_close_.push_back(child);
  size_t held = 0;
  for (const auto& [block, st] : states_)
    if (st.GrantOf(child) > Perm::kNone) ++held;
  if (held == 0 && !lease_children_.count(child)) {
    LogInfo("volume " + cfg_.volume_name + ": child link " + std::to_string(child) + " failed (" + why +
            "); nothing of it to wait for");
    ReleaseChild(child);
    return;
  }
  // Its copies (and its children's) stay usable until its lease lapses: no
  // one may get a conflicting grant before then.
  failed_[child] = until;
  LogWarning("volume " + cfg_.volume_name + ": child link " + std::to_string(child) + " failed (" + why + "); its " +
             std::to_string(held) + " blocks are held for " + std::to_string(MsUntil(now, until)) +
             " ms, until its lease has surely lapsed");
}

void Replica::Tick(Time now) {
  now_ = now;
  if (!cfg_.is_root && connected_ && !heartbeat_in_flight_ && now >= next_heartbeat_) SendHeartbeat(now);
  std::vector<LinkId> lapsed;
  for (const auto& [child, end] : child_lease_end_)
    if (now > end + std::chrono::milliseconds(margin_ms())) lapsed.push_back(child);
  for (LinkId c : lapsed) ChildFailed(c, now, "its lease lapsed: no HEARTBEAT");
  std::vector<LinkId> over;
  for (const auto& [child, until] : failed_)
    if (now >= until) over.push_back(child);
  for (LinkId c : over) {
    failed_.erase(c);
    ReleaseChild(c);
    LogInfo("volume " + cfg_.volume_name + ": the lease of failed child link " + std::to_string(c) +
            " is over; its blocks are released");
  }
  PumpAll(now);
  PumpLease();
  if (connected_)
    for (auto& [id, sync] : syncs_)
      if (sync.retry_at != Time{} && now >= sync.retry_at && !sync.sent_up && sync.pending == 0)
        pending_sync_progress_.push_back(id);
  RunSyncProgress(now);
}

void Replica::PumpAll(Time now) {
  std::vector<uint64_t> blocks;
  for (const auto& [block, run] : runs_) blocks.push_back(block);
  std::sort(blocks.begin(), blocks.end());  // a fixed order, for repeatable runs
  for (uint64_t b : blocks) {
    auto it = runs_.find(b);
    if (it == runs_.end()) continue;
    if (it->second.recall) ServeRecall(b, now);
    else Pump(b, now);
  }
}

uint64_t Replica::LeaveLocal(Time now) {
  now_ = now;
  const uint64_t op = next_local_++;
  bool children_hold = false;
  for (const auto& [block, st] : states_)
    for (const Grant& g : st.grants)
      if (g.perm > Perm::kNone) children_hold = true;
  if (cfg_.is_root || !connected_ || children_hold) {
    CompleteLocal(op, Status::Ok());
    return op;
  }
  Call c{CallKind::kLeave};
  c.sync = op;
  CallParentBare(Opcode::kDisconnect, c, std::chrono::milliseconds(2000));
  return op;
}

void Replica::SetAuthority(Time until, Time now) {
  now_ = now;
  const bool was = LeaseValid(now);
  authority_until_ = until;
  if (!was && LeaseValid(now)) {
    PumpAll(now);
    PumpLease();
  }
}

void Replica::TakeOver(Time now) {
  now_ = now;
  // Children of an earlier term here (this root served before, stepped
  // down, and serves again) have long joined the other root: let them go.
  std::unordered_set<LinkId> old;
  for (const auto& [child, end] : child_lease_end_) old.insert(child);
  for (const auto& [child, until] : failed_) old.insert(child);
  for (const auto& [child, perm] : lease_children_) old.insert(child);
  for (auto& [block, st] : states_) {
    for (const Grant& g : st.grants) old.insert(g.child);
    st.grants.clear();
  }
  old.erase(kLocal);
  for (LinkId c : old) {
    failed_to_close_.push_back(c);
    child_flags_.erase(c);
  }
  child_lease_end_.clear();
  failed_.clear();
  lease_children_.clear();
  // Versions given out before (if this root served before) may name bytes
  // the other root has changed since: start a new epoch.
  version_epoch_ = cfg_.version_epoch ? (cfg_.version_epoch + 1) & 0xffffff : NewEpoch();
  version_counter_ = 0;
  for (auto& [block, st] : states_) st.version = version_epoch_ << kVersionCounterBits;
  authority_until_ = Time::max();
  claims_until_ = now + std::chrono::milliseconds(cfg_.hb_ttl_ms + margin_ms());
  if (cfg_.root_reload) cfg_.root_reload();
  LogWarning("volume " + cfg_.volume_name + ": took the volume over; for " +
             std::to_string(cfg_.hb_ttl_ms + margin_ms()) +
             " ms children's claims (RECOVER) are taken on trust and other requests wait");
}

std::vector<LinkId> Replica::TakeFailedChildren() { return std::exchange(failed_to_close_, {}); }

void Replica::OnParentLost(Time now) {
  now_ = now;
  if (cfg_.is_root || !connected_) return;
  connected_ = false;
  connecting_ = false;
  rejoining_ = true;
  heartbeat_in_flight_ = false;
  LogWarning("volume " + cfg_.volume_name + ": lost the link to the parent; cached blocks stay usable for " +
             std::to_string(MsUntil(now, lease_until_)) + " ms more (the lease)");
}

void Replica::Rejoin(Time now) {
  now_ = now;
  if (cfg_.is_root || connected_) return;
  connecting_ = false;
  ConnectUpward(cfg_.self, cfg_.max_hops);
}

void Replica::ResetAfterRejoin(Time now) {
  // Our children got their grants through the old link, which the parent
  // has written off: they must join again (their copies stay usable only
  // until their leases lapse, and block others until then).
  std::vector<LinkId> children;
  for (const auto& [child, end] : child_lease_end_) children.push_back(child);
  for (LinkId c : children) ChildFailed(c, now, "this node joined its parent again");
  // Blocks whose latest bytes may exist only here (dirty ones, and those
  // FORWARDed to the lost parent) are claimed back with RECOVER, ahead of
  // anything else queued for them; every other copy is dropped.
  std::unordered_set<uint64_t> claim(forwarded_.begin(), forwarded_.end());
  for (uint64_t b : data_->DirtyBlocks()) claim.insert(b);
  if (!claim.empty() && now > lease_until_ + std::chrono::milliseconds(cfg_.hb_ttl_ms + margin_ms())) {
    // Cut off for longer than the grace period: whatever held the blocks for
    // us has let them go, and someone may have written them since.
    LogWarning("volume " + cfg_.volume_name + ": joined again too late to claim back " + std::to_string(claim.size()) +
               " blocks written here; those writes are lost");
    recovery_lost_ += claim.size();
    writes_lost_ = true;
    for (uint64_t b : claim) {
      data_->Drop(b);
      State(b).held = Perm::kNone;
    }
    claim.clear();
  }
  std::vector<uint64_t> blocks;
  for (const auto& [block, st] : states_) blocks.push_back(block);
  for (uint64_t b : blocks) {
    if (claim.count(b)) continue;
    BlockState& st = State(b);
    st.held = Perm::kNone;
    // A clean copy whose version is known is kept, to be revalidated by
    // version when next needed; any other goes.
    if (st.version == 0 || data_->IsDirty(b)) data_->Drop(b);
  }
  claims_pending_ = claim.size();
  claims_kept_ = 0;
  claims_lost_.clear();
  recovery_lost_at_rejoin_ = recovery_lost_;
  std::vector<uint64_t> claimed(claim.begin(), claim.end());
  std::sort(claimed.begin(), claimed.end());
  for (uint64_t b : claimed) {
    Job j;
    j.local_op = next_local_++;  // nobody waits for it
    j.local = LocalKind::kRecover;
    j.give_up = now + std::chrono::milliseconds(2 * cfg_.hb_ttl_ms + 2 * margin_ms());
    j.hops = cfg_.max_hops;
    j.originator = cfg_.self;
    BlockRun& run = runs_[b];
    run.jobs.push_front(std::move(j));
    run.waiting_parent = false;
    run.retry_at = Time{};
  }
  const size_t lost = 0;
  expiry_.clear();
  forwarded_.clear();
  for (auto& [block, run] : runs_) run.recall.reset();  // the old parent's, gone with it
  lease_held_ = Perm::kNone;
  if (lease() > Perm::kNone) {
    LeaseJob j;
    j.want = lease();
    j.reacquire = true;
    j.recovery = true;
    j.hops = cfg_.max_hops;
    j.originator = cfg_.self;
    lease_jobs_.push_back(j);
  }
  (void)lost;
  LogInfo("volume " + cfg_.volume_name + ": joined the parent again; " + std::to_string(claim.size()) +
          " blocks written here are claimed back with RECOVER, other cached blocks are fetched anew");
}

LeaseInfo Replica::lease_info(Time now) const {
  LeaseInfo i;
  i.valid = LeaseValid(now);
  i.ms_left = cfg_.is_root ? 0 : MsUntil(now, lease_until_);
  if (ever_renewed_) i.ms_since_renewal = std::chrono::duration_cast<std::chrono::milliseconds>(now - last_renewal_).count();
  for (const auto& [block, st] : states_)
    for (const Grant& g : st.grants)
      if (failed_.count(g.child)) {
        ++i.frozen_blocks;
        break;
      }
  i.failed_children = failed_children_;
  i.rejoins = rejoins_;
  i.recovered = recovered_;
  i.recovery_lost = recovery_lost_;
  i.claims_served = claims_served_;
  i.revalidated = revalidated_;
  return i;
}

// ---- The writer lease ----

uint64_t Replica::AcquireLeaseLocal(bool shared, Time now) {
  now_ = now;
  return LeaseLocal(shared ? Perm::kRead : Perm::kWrite, shared); }

uint64_t Replica::ReleaseLeaseLocal(bool shared, Time now) {
  now_ = now;
  return LeaseLocal(Perm::kNone, shared);
}

uint64_t Replica::LeaseLocal(Perm want, bool shared) {
  LeaseJob job;
  job.local_op = next_local_++;
  job.want = want;
  job.shared = shared;
  job.hops = cfg_.max_hops;
  job.originator = cfg_.self;
  lease_jobs_.push_back(job);
  PumpLease();
  return job.local_op;
}

Perm Replica::lease() const {
  if (lease_local_exclusive_ > 0) return Perm::kWrite;
  return lease_local_shared_ > 0 ? Perm::kRead : Perm::kNone;
}

Perm Replica::LeaseNeeded() const {
  Perm p = lease();
  for (const auto& [child, held] : lease_children_) p = std::max(p, held);
  return p;
}

bool Replica::LeaseConflicts(const LeaseJob& job) const {
  auto clash = [&](Perm held) { return held > Perm::kNone && (job.want == Perm::kWrite || held == Perm::kWrite); };
  for (const auto& [child, held] : lease_children_)
    if (child != job.from && clash(held) && !(job.recovery && failed_.count(child))) return true;
  // Opens on this node never conflict with each other, only with children.
  return job.from != kLocal && clash(lease());
}

void Replica::FinishLease(const LeaseJob& job, const Status& st, WireStatus wire) {
  if (job.reacquire) {
    if (!st.ok())
      LogWarning("volume " + cfg_.volume_name + ": the writer lease was lost while the parent link was down (" +
                 st.message() + "); files open for writing here may conflict with another node's");
    return;
  }
  if (job.from == kLocal) return CompleteLocal(job.local_op, st);
  if (job.reply_xid == 0) return;  // a release for a child that is gone
  if (!st.ok()) return SendToChild(job.from, ErrorReply(job.reply_xid, wire));
  Message r = ReplyFor(job.reply_xid);
  r.volume_id = cfg_.volume_id;
  r.permissions = ToWire(job.want);
  SendToChild(job.from, std::move(r));
}

// Lease requests run one at a time, in arrival order: each may wait for the
// parent, and the next must see its outcome.
void Replica::PumpLease() {
  if (now_ < lease_retry_at_) return;  // Tick comes back
  while (!lease_jobs_.empty() && !lease_waiting_parent_ && connected_) {
    LeaseJob& j = lease_jobs_.front();
    Perm target;  // what this node must hold from its parent once j is done
    if (j.want == Perm::kNone) {
      if (j.asked == Perm::kNone) {  // first visit: the holder goes
        if (j.from != kLocal) lease_children_.erase(j.from);
        else if (j.shared && lease_local_shared_ > 0) --lease_local_shared_;
        else if (!j.shared && lease_local_exclusive_ > 0) --lease_local_exclusive_;
      }
      target = LeaseNeeded();
      if (cfg_.is_root || target >= lease_held_ || j.asked != Perm::kNone) {
        FinishLease(j, Status::Ok(), WireStatus::kBusy);
        lease_jobs_.pop_front();
        continue;
      }
    } else {
      if (!HasAuthority(now_)) {  // a standby root: no one may write through it
        FinishLease(j, Status::Busy("this root of volume " + cfg_.volume_name + " is not the active one"),
                    WireStatus::kInRecovery);
        lease_jobs_.pop_front();
        continue;
      }
      if (!j.reacquire && LeaseConflicts(j)) {
        FinishLease(j, Status::Busy("another node holds the writer lease of volume " + cfg_.volume_name),
                    WireStatus::kBusy);
        lease_jobs_.pop_front();
        continue;
      }
      target = std::max(LeaseNeeded(), j.want);
      if (j.from != kLocal && !child_flags_.count(j.from)) {
        // The child left while its request was with our parent: give back
        // what we took for it instead.
        j.want = Perm::kNone;
        j.reply_xid = 0;
        j.asked = Perm::kNone;
        continue;
      }
      if (cfg_.is_root || target <= lease_held_) {
        if (j.reacquire) {
          // the holders are counted already
        } else if (j.from == kLocal) {
          ++(j.want == Perm::kRead ? lease_local_shared_ : lease_local_exclusive_);
        } else {
          lease_children_[j.from] = j.want;
        }
        FinishLease(j, Status::Ok(), WireStatus::kBusy);
        lease_jobs_.pop_front();
        continue;
      }
      if (j.from != kLocal && j.hops == 0) {
        FinishLease(j, Status::IOError("hops ran out"), WireStatus::kLoopDetected);
        lease_jobs_.pop_front();
        continue;
      }
    }
    // Ask the parent for `target` (more, or less, than held now).
    Message up;
    up.opcode = Opcode::kIoRequest;
    up.io_op = IoOp::kLock;
    up.volume_id = parent_volume_id_;
    up.permissions = ToWire(target);
    up.hops_left = static_cast<uint8_t>(j.from == kLocal ? cfg_.max_hops : j.hops - 1);
    up.originator = j.from == kLocal ? cfg_.self : j.originator;
    if (j.recovery) up.flags |= msg_flags::kRecoveryOp;
    j.asked = target;
    lease_waiting_parent_ = true;
    CallParent(std::move(up), Call{CallKind::kLease});
    return;
  }
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

uint64_t Replica::ForwardLocal(uint64_t block, Time now) {
  Job j;
  j.local_op = next_local_++;
  j.local = LocalKind::kForward;
  j.hops = cfg_.max_hops;
  j.originator = cfg_.self;
  const uint64_t id = j.local_op;
  if (cfg_.is_root) {  // the root's store is the only place there is
    CompleteLocal(id, Status::Ok());
    return id;
  }
  Enqueue(block, std::move(j), now);
  return id;
}

uint64_t Replica::DropAllLocal(Time now) {
  const uint64_t op = next_local_++;
  if (cfg_.is_root) {
    CompleteLocal(op, Status::Ok());
    return op;
  }
  StartSync(kLocal, 0, op, now, /*drop=*/true);
  return op;
}

// A job whose upstream request must go again. Most redo their last stage;
// a FLUSH only sends its request again, since its first stage has already
// taken the sender's data and permission (running it again would take a
// child's retried FLUSH for a stale one).
void Replica::Restage(Job& j) {
  if (j.op == IoOp::kFlush && j.local != LocalKind::kDrop && j.stage == 1) {
    j.resend = true;
    return;
  }
  if (j.stage > 0) --j.stage;
}

void Replica::CallUpstream(uint64_t block, Job& j, Message up, Time now) {
  j.sent = now;
  j.upstream_reply.reset();
  CallParent(std::move(up), Call{CallKind::kUpstream, block, 0, Perm::kNone, now});
  runs_[block].waiting_parent = true;
}

// Semi-sync: the parent gets the bytes, we keep WRITE and stay responsible.
bool Replica::AdvanceForward(uint64_t block, Job& j, Time now) {
  if (j.stage == 0) {
    std::vector<uint8_t> bytes;
    if (!data_->IsDirty(block) || !data_->Get(block, &bytes)) {  // a recall took it up already
      Finish(j, ReplyFor(0));
      return true;
    }
    Message up;
    up.opcode = Opcode::kForward;
    up.volume_id = parent_volume_id_;
    up.block_num = block;
    up.data = std::move(bytes);
    up.flags = j.flags & msg_flags::kForceSync;
    up.hops_left = cfg_.max_hops;
    up.originator = cfg_.self;
    j.stage = 1;
    CallUpstream(block, j, std::move(up), now);
    return false;
  }
  const Message& up = *j.upstream_reply;
  if (up.opcode != Opcode::kOkReply) {
    Fail(j, up.status.value_or(WireStatus::kBusy), "the parent refused the FORWARD of block " + std::to_string(block));
    return true;
  }
  // Writes to the block queue behind this job, so the copy is still what
  // was sent, unless a recall has taken it meanwhile.
  if (Held(block, now) == Perm::kWrite && data_->IsDirty(block)) {
    data_->MarkClean(block);
    forwarded_.insert(block);
  }
  Finish(j, ReplyFor(0));
  return true;
}

// After a rejoin: hand the new parent bytes that may exist only here. It
// takes them (and lets us keep WRITE) when the node we lost held WRITE on the
// block at its end, so nobody can have written it since; otherwise they were
// superseded and are dropped, said in the log.
bool Replica::AdvanceRecover(uint64_t block, Job& j, Time now) {
  auto give_up = [&](const std::string& why) {
    ++recovery_lost_;
    writes_lost_ = true;
    ClaimSettled(block, false, why);
    forwarded_.erase(block);
    data_->Drop(block);
    expiry_.erase(block);
    State(block).held = Perm::kNone;
    Finish(j, ReplyFor(0));
    return true;
  };
  if (j.stage == 0) {
    // The parent answers IN_RECOVERY while it cannot tell yet whether the
    // node we lost held the block; that is settled within a lease and the
    // grace period, or never (our claim lost out to a live writer).
    if (j.give_up != Time{} && now > j.give_up) return give_up("the claim could not be settled in time");
    std::vector<uint8_t> bytes;
    if (!data_->Get(block, &bytes)) return give_up("no copy left");
    Message up = Upstream(j, IoOp::kRecover, block, Perm::kWrite);
    up.flags |= msg_flags::kRecoveryOp;
    up.version = StateOf(block).version;
    up.data = std::move(bytes);
    j.stage = 1;
    CallUpstream(block, j, std::move(up), now);
    return false;
  }
  const Message& up = *j.upstream_reply;
  if (up.opcode != Opcode::kOkReply) return give_up("the parent answered " + Describe(up));
  if (FromWire(up.permissions, Perm::kNone) == Perm::kRead) {
    // The parent has these very bytes already: nothing to keep, nothing lost.
    forwarded_.erase(block);
    data_->Drop(block);
    expiry_.erase(block);
    State(block).held = Perm::kNone;
    ++recovered_;
    ClaimSettled(block, true, "");
    Finish(j, ReplyFor(0));
    return true;
  }
  if (FromWire(up.permissions, Perm::kNone) != Perm::kWrite) return give_up("superseded");
  BlockState& st = State(block);
  st.held = Perm::kWrite;
  if (up.ttl_ms) expiry_[block] = j.sent + std::chrono::milliseconds(*up.ttl_ms);
  data_->MarkClean(block);
  forwarded_.insert(block);  // the new parent holds them now; we still answer for them
  ++recovered_;
  ClaimSettled(block, true, "");
  Finish(j, ReplyFor(0));
  return true;
}

void Replica::ClaimSettled(uint64_t block, bool kept, const std::string& why) {
  if (kept) ++claims_kept_;
  else if (claims_lost_.size() < 8) claims_lost_.push_back(block);
  if (!kept && claims_lost_.size() <= 1) last_claim_loss_ = why;
  if (claims_pending_ == 0 || --claims_pending_ > 0) return;
  const uint64_t lost = recovery_lost_ - recovery_lost_at_rejoin_;
  if (lost == 0) {
    LogInfo("volume " + cfg_.volume_name + ": recovery done: all " + std::to_string(claims_kept_) +
            " blocks written here were taken by the new parent");
    return;
  }
  std::string list;
  for (uint64_t b : claims_lost_) list += (list.empty() ? "" : ", ") + std::to_string(b);
  LogWarning("volume " + cfg_.volume_name + ": recovery done: " + std::to_string(claims_kept_) + " blocks kept, " +
             std::to_string(lost) + " lost (" + last_claim_loss_ + "): writes made here to blocks " + list +
             (lost > claims_lost_.size() ? ", ..." : "") + " are gone");
}

// A RECOVER from a child: see AdvanceRecover. Taken when a failed child
// held WRITE (the claimant was below it) or the claimant holds it already;
// IN_RECOVERY (ask again) while another live child holds WRITE, or an
// invalidation of the block is under way: the claimant's lost parent may
// be that child, not yet found failed; superseded otherwise.
void Replica::ServeRecover(uint64_t block, const Job& j, Time now) {
  BlockState& st = State(block);
  bool failed_writer = false, live_writer = false;
  for (const Grant& g : st.grants) {
    if (g.perm != Perm::kWrite || g.child == j.from) continue;
    (failed_.count(g.child) ? failed_writer : live_writer) = true;
  }
  Message r = ReplyFor(j.reply_xid);
  r.volume_id = cfg_.volume_id;
  r.block_num = block;
  auto run = runs_.find(block);
  const bool pending = run != runs_.end() && run->second.acks > 0;
  // Our own right to the block is unsettled while our lease has lapsed or
  // we are claiming it back ourselves (after our own rejoin).
  const bool own_claim = run != runs_.end() && !run->second.jobs.empty() &&
                         run->second.jobs.front().local == LocalKind::kRecover;
  const bool unsettled = cfg_.is_root ? !HasAuthority(now) : !LeaseValid(now) || own_claim;
  // Just after a takeover the root knows no grants: a claim is taken on
  // trust unless another claimant got there first.
  if (cfg_.is_root && now < claims_until_ && !live_writer && !pending) failed_writer = true;
  if ((!failed_writer && st.GrantOf(j.from) != Perm::kWrite && (live_writer || pending)) || unsettled) {
    Fail(j, WireStatus::kInRecovery, "block " + std::to_string(block) + ": a claim that cannot be settled yet");
    return;
  }
  // What we hold, whatever the time left on the block's own grant.
  if ((!failed_writer && st.GrantOf(j.from) != Perm::kWrite) || (!cfg_.is_root && st.held != Perm::kWrite)) {
    // Superseded, unless the bytes claimed are what we hold already (a
    // FLUSH of them arrived before the link went) and no one below us holds
    // WRITE: then nothing is lost. READ says so; no grant is recorded.
    std::vector<uint8_t> mine;
    const bool same = !live_writer && !pending && data_->Get(block, &mine) && mine == *j.data;
    r.permissions = same ? WirePerm::kRead : WirePerm::kNone;
    Finish(j, r);
    return;
  }
  data_->Put(block, *j.data, /*dirty=*/!cfg_.is_root);
  Changed(st);
  // The claimant holds WRITE now; the failed node's grant stays until its
  // lease is over, keeping everyone else out meanwhile.
  bool found = false;
  for (Grant& g : st.grants)
    if (g.child == j.from) {
      g.perm = Perm::kWrite;
      found = true;
    }
  if (!found) st.grants.push_back(Grant{j.from, Perm::kWrite});
  r.permissions = WirePerm::kWrite;
  r.ttl_ms = TtlLeft(block, now);
  r.hb_ttl_ms = cfg_.hb_ttl_ms;
  r.version = st.version;
  ++claims_served_;
  Finish(j, r);
}

// One block of DropAllLocal: make sure the bytes live elsewhere, then give
// the permission back and forget the copy.
bool Replica::AdvanceDrop(uint64_t block, Job& j, Time now) {
  auto drop_copy = [&] {
    forwarded_.erase(block);
    data_->Drop(block);
    expiry_.erase(block);
    State(block).held = Perm::kNone;
  };
  if (j.stage == 0) {
    if (data_->IsDirty(block)) {  // a FLUSH keeping nothing (Example Four)
      j.local = LocalKind::kNone;
      j.op = IoOp::kFlush;
      j.keep = Perm::kNone;
      return AdvanceFlush(block, j, now);
    }
    j.stage = 2;
    if (forwarded_.count(block)) {
      Message up;
      up.opcode = Opcode::kForward;  // no DATA: pass your copy a level up
      up.volume_id = parent_volume_id_;
      up.block_num = block;
      up.hops_left = cfg_.max_hops;
      up.originator = cfg_.self;
      j.stage = 1;
      CallUpstream(block, j, std::move(up), now);
      return false;
    }
  }
  if (j.stage == 1) {
    const Message& up = *j.upstream_reply;
    if (up.opcode != Opcode::kOkReply) {  // keep the copy: it may be the only other one
      Fail(j, up.status.value_or(WireStatus::kBusy), "the parent could not pass block " + std::to_string(block) + " up");
      return true;
    }
    forwarded_.erase(block);
    j.stage = 2;
  }
  if (j.stage == 2) {
    // A proxy keeps what its children still hold.
    Perm keep = Perm::kNone;
    for (const Grant& g : State(block).grants) keep = std::max(keep, g.perm);
    if (keep > Perm::kNone) {
      Finish(j, ReplyFor(0));
      return true;
    }
    if (Held(block, now) == Perm::kNone) {
      drop_copy();
      Finish(j, ReplyFor(0));
      return true;
    }
    Message up = Upstream(j, IoOp::kLock, block, Perm::kNone);
    j.stage = 3;
    CallUpstream(block, j, std::move(up), now);
    return false;
  }
  // Stage 3: the LOCK NO_PERMS was answered. The copy goes either way; a
  // parent that missed it only sends an INVALIDATE we answer at once.
  drop_copy();
  Finish(j, ReplyFor(0));
  return true;
}

void Replica::HandleForward(LinkId child, const Message& m, Time now) {
  auto refuse = [&](WireStatus st, std::optional<ParamType> param) { SendToChild(child, ErrorReply(m.xid, st, param)); };
  if (!connected_ || !m.volume_id || *m.volume_id != cfg_.volume_id) return refuse(WireStatus::kNoSuchVolume, std::nullopt);
  if (!m.block_num) return refuse(WireStatus::kBadParamValue, ParamType::kBlockNum);
  if (*m.block_num >= block_count()) return refuse(WireStatus::kOutOfRange, ParamType::kBlockNum);
  if (m.data && m.data->size() != cfg_.block_size) return refuse(WireStatus::kBadParamLength, ParamType::kData);
  if (m.originator == cfg_.self) return refuse(WireStatus::kLoopDetected, std::nullopt);
  Job j;
  j.from = child;
  j.reply_xid = m.xid;
  j.flags = m.flags;
  if (auto f = child_flags_.find(child); f != child_flags_.end() && (f->second & connect_flags::kSyncWrite))
    j.flags |= msg_flags::kForceSync;
  j.hops = m.hops_left;
  j.originator = m.originator;
  j.forward = true;
  j.op = IoOp::kFlush;
  j.keep = cfg_.keep_copies ? Perm::kRead : Perm::kNone;
  j.data = m.data;
  Enqueue(*m.block_num, std::move(j), now);
}

// A child's semi-sync write: the bytes are kept here (dirty, below the
// root) while the child keeps WRITE. Stale when the child's WRITE has been
// recalled since: the recall's answer brought newer bytes.
bool Replica::StoreForwarded(uint64_t block, Job& j, Time now) {
  Message r = ReplyFor(j.reply_xid);
  BlockState& st = State(block);
  if (st.GrantOf(j.from) != Perm::kWrite) {
    r.permissions = WirePerm::kNone;
    Finish(j, r);
    return true;
  }
  data_->Put(block, *j.data, /*dirty=*/!cfg_.is_root);
  Changed(st);
  if (j.flags & msg_flags::kForceSync) {
    if (!cfg_.is_root) {  // a sync writer's FORWARD goes all the way: flush our copy
      j.data.reset();
      return AdvanceFlush(block, j, now);
    }
    if (!SyncIfForced(block, j)) return true;
  }
  Finish(j, r);
  return true;
}

// ---- The per-block queue ----

void Replica::Enqueue(uint64_t block, Job job, Time now) {
  now_ = now;
  runs_[block].jobs.push_back(std::move(job));
  Pump(block, now);
}

void Replica::Pump(uint64_t block, Time now) {
  auto it = runs_.find(block);
  if (it == runs_.end()) return;
  BlockRun& run = it->second;
  if (!connected_ && !rejoining_) return;  // Start() or a child's CONNECT is under way
  if (now < run.retry_at) return;           // the parent said IN_RECOVERY: Tick comes back
  while (!run.jobs.empty() && run.acks == 0 && !run.waiting_parent && !run.recall) {
    // With the parent link down, only reads the lease still covers go on.
    const Job& head = run.jobs.front();
    if (!connected_ && (head.from != kLocal || head.local != LocalKind::kRead || Held(block, now) < Perm::kRead))
      return;
    if (!Advance(block, run.jobs.front(), now)) return;
    run.jobs.pop_front();
  }
  // By key, not by `it`: Advance may have added runs for other blocks, and
  // a rehash invalidates iterators (references such as `run` stay valid).
  if (run.jobs.empty() && run.acks == 0 && !run.waiting_parent && !run.recall) runs_.erase(block);
}

bool Replica::Advance(uint64_t block, Job& j, Time now) {
  // A root without authority writes nothing, nor grants: SetAuthority or
  // Tick pumps the queue again.
  if (cfg_.is_root && !LeaseValid(now)) return false;
  if (j.local == LocalKind::kForward) return AdvanceForward(block, j, now);
  if (j.local == LocalKind::kDrop) return AdvanceDrop(block, j, now);
  if (j.local == LocalKind::kRecover) return AdvanceRecover(block, j, now);
  if (j.forward && j.data && j.stage == 0) return StoreForwarded(block, j, now);
  if (j.op == IoOp::kPut) return AdvancePut(block, j, now);
  if (j.op == IoOp::kFlush) return AdvanceFlush(block, j, now);
  if (j.op == IoOp::kLock && j.want == Perm::kNone) {  // giving permission back
    if (j.from != kLocal) State(block) = Step(State(block), Event{Event::Kind::kRelease, j.from, Perm::kNone}).next;
    Finish(j, ReplyFor(0));
    return true;
  }
  if (!LeaseValid(now)) {  // every copy from the parent is indeterminate: renew first
    if (!heartbeat_in_flight_) SendHeartbeat(now);
    return false;  // PumpAll once renewed
  }
  if (BlockedByFailed(block, j.want, j.from)) {
    if (j.from == kLocal) return false;  // Tick pumps it when the failed child's grants go
    Fail(j, WireStatus::kInRecovery, "block " + std::to_string(block) + " waits for a failed child's lease");
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
  // A child that kept a copy of this very version needs only the grant.
  const bool unchanged = j.op == IoOp::kGet && j.from != kLocal && j.version != 0 &&
                         j.version == State(block).version && (cfg_.is_root || data_->Get(block, &bytes));
  const bool wants_data = j.op == IoOp::kGet && j.from != kLocal && !unchanged;
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
      Changed(st);
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
  Call c{CallKind::kUpstream, block, 0, Perm::kNone, now};
  // A copy kept without a valid grant (a lapsed TTL, a rejoin) whose
  // version is known: the parent sends the bytes only if they changed.
  if (!have_copy && !data_->IsDirty(block) && StateOf(block).version != 0 && data_->Get(block, &ignored)) {
    c.version = StateOf(block).version;
    up.version = c.version;
  }
  CallParent(std::move(up), c);
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
  Outgoing o{Outgoing::Kind::kCall, false, child, id, std::move(m)};
  // No longer than the child's lease, plus what the child itself may have
  // to wait for a failed child of its own (that one's lease, ending no
  // later, and the grace period): past that, a live child has answered.
  if (auto it = child_lease_end_.find(child); it != child_lease_end_.end())
    o.timeout = std::max(std::chrono::milliseconds(200),
                         std::chrono::duration_cast<std::chrono::milliseconds>(it->second - now) +
                             std::chrono::milliseconds(2 * margin_ms() + cfg_.hb_ttl_ms));
  outbox_.push_back(std::move(o));
  ++runs_[block].acks;
}

// PUT: a write-through. Every other copy below this node goes first, then
// the data travels up to the root; the writer keeps no permission.
bool Replica::AdvancePut(uint64_t block, Job& j, Time now) {
  if (j.stage == 0) {
    if (BlockedByFailed(block, Perm::kWrite, j.from)) {
      if (j.from == kLocal) return false;
      Fail(j, WireStatus::kInRecovery, "block " + std::to_string(block) + " waits for a failed child's lease");
      return true;
    }
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
  if (j.stage == 1 && BlockedByFailed(block, Perm::kWrite, j.from)) {
    // An invalidation failed meanwhile: that child's grant stands until its
    // lease is over.
    if (j.from == kLocal) return false;
    Fail(j, WireStatus::kInRecovery, "block " + std::to_string(block) + " waits for a failed child's lease");
    return true;
  }
  if (j.stage == 1) {
    if (cfg_.is_root) {
      data_->Put(block, *j.data, false);
      if (!SyncIfForced(block, j)) return true;
      BlockState& st = State(block);
      Changed(st);
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
  // This node's own data goes up: a local flush, or a child's FORWARD
  // without DATA asking for what we hold to go a level further.
  const bool own = j.from == kLocal || j.forward;
  if (j.stage == 0) {
    if (!own && State(block).GrantOf(j.from) != Perm::kWrite) {
      // The sender's WRITE was already recalled, and its data came back with
      // the recall; this older copy must not overwrite what followed.
      Message r = ReplyFor(j.reply_xid);
      r.permissions = WirePerm::kNone;
      Finish(j, r);
      return true;
    }
    if (own) {
      // Nothing newer here than upstream any more (a recall took it up
      // since the flush was asked for): done.
      if (!data_->IsDirty(block)) {
        Finish(j, ReplyFor(j.reply_xid));
        return true;
      }
      // What we hold, lease or not: dirty data must go up either way (a
      // parent that reclaimed our grant meanwhile ignores it).
      if (StateOf(block).held != Perm::kWrite) {
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
    if (!own) {
      Changed(st);
      st = Step(st, Event{Event::Kind::kRelease, j.from, j.keep}).next;
    }
    if (cfg_.is_root) {
      if (!SyncIfForced(block, j)) return true;
      Finish(j, ReplyFor(j.reply_xid));
      return true;
    }
    if (j.hops == 0) {
      Fail(j, WireStatus::kLoopDetected, "hops ran out");
      return true;
    }
    // What this node keeps must cover what its children (and it) still hold.
    Perm mine = j.from == kLocal ? j.keep : (cfg_.keep_copies ? Perm::kRead : Perm::kNone);
    if (j.forward) mine = std::max(mine, Held(block, now));  // we pass it on, we do not give it up
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
  if (j.resend) {  // the request was lost or refused for now: the same again
    j.resend = false;
    Message again = Upstream(j, IoOp::kFlush, block, j.want);
    again.data = j.data;
    CallUpstream(block, j, std::move(again), now);
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
    run.recall = Recall{m.xid, FromWire(m.permissions, Perm::kNone), {}, false};
    return ServeRecall(*m.block_num, now);
  }
  if (m.opcode == Opcode::kPush && m.block_num && m.data && m.data->size() == cfg_.block_size && m.ttl_ms) {
    // Unsolicited data: kept as a READ copy unless the block is busy here.
    const uint64_t block = *m.block_num;
    if (!runs_.count(block) && State(block).held <= Perm::kRead) {
      data_->Put(block, *m.data, false);
      State(block).held = Perm::kRead;
      State(block).version = m.version.value_or(0);
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
  // Every live grant above the target is recalled, including one taken
  // while the recall waited (a RECOVER claim), each child once.
  for (const Grant& g : State(block).grants)
    if (g.perm > rc.to && !failed_.count(g.child) &&
        std::find(rc.recalled.begin(), rc.recalled.end(), g.child) == rc.recalled.end()) {
      rc.recalled.push_back(g.child);
      Invalidate(block, g.child, rc.to, now);
      rc.invalidated_children = true;
    }
  if (run.acks > 0) return;
  // A failed child's grant stands until its lease is over (Tick comes back).
  if (BlockedByFailed(block, rc.to == Perm::kNone ? Perm::kWrite : Perm::kRead, kLocal)) return;
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
  if (rc.to < Perm::kWrite) forwarded_.erase(block);  // the parent took the block back: its duty now
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
  // Any answer from the parent that carries HB_TTL renews our lease.
  if (ok && reply.hb_ttl_ms && call.kind != CallKind::kInvalidate && !rejoining_)
    Renewed(call.sent, *reply.hb_ttl_ms, now);

  if (call.kind == CallKind::kLeave) {
    CompleteLocal(call.sync, Status::Ok());  // nothing more to do either way
    return;
  }

  if (call.kind == CallKind::kHeartbeat) {
    heartbeat_in_flight_ = false;
    if (ok && reply.hb_ttl_ms) {
      heartbeat_failures_ = 0;
      PumpAll(now);  // what waited for the renewal
    } else if (!st.ok() && ++heartbeat_failures_ == 3) {
      LogWarning("volume " + cfg_.volume_name + ": the parent did not answer 3 HEARTBEATs in a row (" + st.ToString() +
                 "); looking for another");
      parent_failed_ = true;
    }
    return;
  }

  if (call.kind == CallKind::kConnect) {
    connecting_ = false;
    if (ok && reply.volume_id) {
      connected_ = true;
      parent_volume_id_ = *reply.volume_id;
      if (reply.volume_size) cfg_.volume_size = *reply.volume_size;
      if (reply.block_size) cfg_.block_size = *reply.block_size;
      upstream_ = reply.parent_list.value_or(std::vector<std::string>{});
      heartbeat_failures_ = 0;
      if (reply.hb_ttl_ms) {
        cfg_.hb_ttl_ms = std::min(cfg_.hb_ttl_ms, *reply.hb_ttl_ms);  // what we pass down, at most
        Renewed(call.sent, *reply.hb_ttl_ms, now);
      }
      next_heartbeat_ = now + std::chrono::milliseconds(heartbeat_ms());
      if (rejoining_) {
        rejoining_ = false;
        ++rejoins_;
        ResetAfterRejoin(now);
      }
    } else {
      connect_error_ = !st.ok() ? st.message()
                       : reply.status ? std::string("the parent answered ") + WireStatusName(*reply.status)
                                      : "the parent refused";
      LogWarning("volume " + cfg_.volume_name + ": CONNECT to the parent failed: " + connect_error_);
    }
    if (connected_) {  // requests made while connecting may go now
      PumpAll(now);
      PumpLease();
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

  if (call.kind == CallKind::kLease) {
    lease_waiting_parent_ = false;
    if (lease_jobs_.empty()) return;
    LeaseJob& j = lease_jobs_.front();
    if (j.want == Perm::kNone) {
      // Given back here whatever the parent said: nothing below needs it.
      if (!ok)
        LogWarning("volume " + cfg_.volume_name + ": giving the writer lease back to the parent failed (" +
                   (st.ok() ? Describe(reply) : st.ToString()) + ")");
      lease_held_ = j.asked;
    } else if (ok) {
      lease_held_ = std::max(lease_held_, j.asked);
      j.asked = Perm::kNone;  // granted when PumpLease looks again
      return PumpLease();
    } else if (!st.ok()) {
      // Lost with the link (or timed out): ask again shortly, of whatever
      // parent there is then; the asker's own deadline bounds it.
      j.asked = Perm::kNone;
      lease_retry_at_ = now + std::chrono::milliseconds(200);
      return;
    } else {
      const WireStatus wire = st.ok() ? reply.status.value_or(WireStatus::kBusy) : WireStatus::kBusy;
      FinishLease(j,
                  st.ok() && wire == WireStatus::kBusy
                      ? Status::Busy("another node holds the writer lease of volume " + cfg_.volume_name)
                      : Status::IOError("cannot take the writer lease: " + (st.ok() ? Describe(reply) : st.ToString())),
                  wire);
      lease_jobs_.pop_front();
      return PumpLease();
    }
    FinishLease(j, Status::Ok(), WireStatus::kBusy);
    lease_jobs_.pop_front();
    return PumpLease();
  }

  if (call.kind == CallKind::kSync) {
    if (syncs_.count(call.sync) && !st.ok()) {  // lost with the link: again, to whatever parent there is
      SyncOp& s = syncs_.at(call.sync);
      s.sent_up = false;
      s.retry_at = now + std::chrono::milliseconds(200);
      return;
    }
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
    if (!ok)  // its grants stand until its lease is over, then go
      ChildFailed(call.child, now,
                  "INVALIDATE of block " + std::to_string(block) + " failed: " + (st.ok() ? Describe(reply) : st.ToString()));
    BlockState& bs = State(block);
    if (ok) bs = Step(bs, Event{Event::Kind::kInvalidateAck, call.child, call.to}).next;
    if (ok && reply.data && reply.data->size() == cfg_.block_size) {
      data_->Put(block, *reply.data, /*dirty=*/!cfg_.is_root);  // a child's write, recalled
      Changed(bs);
    }
    if (run.recall) ServeRecall(block, now);
    else Pump(block, now);
    return;
  }

  // kUpstream: the reply to the head job's request.
  run.waiting_parent = false;
  if (run.jobs.empty()) return Pump(block, now);
  Job& j = run.jobs.front();
  if (st.ok() && reply.opcode == Opcode::kErrReply && reply.status == WireStatus::kInRecovery) {
    // Above us a failed node's grant holds the block for a while: ask again
    // shortly (the caller's own deadline bounds the wait).
    run.retry_at = now + std::chrono::milliseconds(100);
    Restage(j);
    return;
  }
  if (!st.ok() && j.op != IoOp::kPut) {
    // The link failed under the request, or it timed out: ask again once
    // there is a parent to ask (after a rejoin, RECOVER goes first). Every
    // request but PUT is safe to repeat: a repeated FLUSH or FORWARD is
    // ignored once the sender's WRITE is gone. The asker's own deadline
    // bounds the wait.
    run.retry_at = now + std::chrono::milliseconds(200);
    Restage(j);
    return;
  }
  if (j.op == IoOp::kPut || j.op == IoOp::kFlush || j.local == LocalKind::kForward || j.local == LocalKind::kDrop ||
      j.local == LocalKind::kRecover) {
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
  if (!reply.data && call.version != 0) {
    std::vector<uint8_t> kept;
    if (reply.version == call.version && data_->Get(block, &kept)) {
      ++revalidated_;  // our copy is current: nothing was sent again
    } else {
      // Neither the bytes nor a matching version: ask again, for the bytes.
      data_->Drop(block);
      bs.held = Perm::kNone;
      bs.version = 0;
      Restage(j);
      return Pump(block, now);
    }
  }
  if (reply.data && reply.data->size() == cfg_.block_size) {
    if (!data_->IsDirty(block)) {
      data_->Put(block, *reply.data, false);
    } else if (bs.held != Perm::kWrite) {
      // The parent no longer counts us as the writer: what we wrote was
      // superseded while we could not say so.
      LogWarning("volume " + cfg_.volume_name + ": block " + std::to_string(block) +
                 ": writes made here were superseded and are lost");
      data_->Put(block, *reply.data, false);
    }  // else: we held WRITE all along, and our bytes are the newer
  }
  if (reply.version) bs.version = *reply.version;
  Pump(block, now);
}

}  // namespace vshare
