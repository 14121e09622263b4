// The per-block queues, room in the table, and the root's store I/O.
//
// Requests for a block run one at a time in arrival order. The head job
// needs a slot for its block first: an empty one, or one whose copy can be
// dropped on the spot (the parent is told); otherwise the set's least
// recently used block is evicted through the protocol (evict.cc) and the
// queue waits until that is done. Blocks with work under way are never
// chosen. At the root, reads of the store and write-backs are effects
// (StoreOp) that run on other threads; the block's queue waits for them.
#include <algorithm>
#include <cstring>

#include "core/log.h"
#include "core/replica.h"

namespace vshare {

// ---- The table, as the engine uses it ----

BlockState Replica::Load(const BlockTable::Slot& s) const {
  BlockState st;
  st.held = table_->HeldOf(s);
  st.version = s.version;
  st.holders = s.holders & ~children_.stale_mask();
  st.child_writes = st.holders != 0 && s.child_writes;
  return st;
}

void Replica::Store(uint64_t block, const BlockState& st) {
  BlockTable::Locked set = table_->Lock(block);
  BlockTable::Slot* s = set.Find(block);
  if (!s) {
    LogError("volume " + cfg_.volume_name + ": internal error: state for block " + std::to_string(block) +
             " has no slot; dropped");
    return;
  }
  StoreIn(*s, st);
}

void Replica::StoreIn(BlockTable::Slot& slot, const BlockState& st) {
  BlockTable::Slot* s = &slot;
  const uint64_t before = s->holders & ~children_.stale_mask();
  children_.Counted(before, st.holders);
  s->held = cfg_.is_root ? Perm::kWrite : st.held;
  s->gen = table_->generation();
  s->holders = st.holders;
  s->child_writes = st.holders != 0 && st.child_writes;
}

void Replica::SetExpiry(uint64_t block, Time until) {
  BlockTable::Locked set = table_->Lock(block);
  if (BlockTable::Slot* s = set.Find(block)) SetExpiryIn(*s, until);
}

void Replica::SetExpiryIn(BlockTable::Slot& s, Time until) {
  s.expiry_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(until.time_since_epoch()).count();
}

Time Replica::ExpiryOf(uint64_t block) const {
  BlockTable::Locked set = table_->Lock(block);
  BlockTable::Slot* s = set.Find(block);
  return s ? Time(std::chrono::nanoseconds(s->expiry_ns)) : Time{};
}

// The permission this node may use now: the root's never lapses; anyone
// else's lapses with the TTL of the grant that gave it.
Perm Replica::Held(uint64_t block, Time now) const {
  if (cfg_.is_root) return Perm::kWrite;
  if (!table_ || !LeaseValid(now)) return Perm::kNone;  // indeterminate until renewed
  BlockTable::Locked set = table_->Lock(block);
  BlockTable::Slot* s = set.Find(block);
  return s ? HeldIn(*s, now) : Perm::kNone;
}

Perm Replica::HeldIn(const BlockTable::Slot& s, Time now) const {
  if (cfg_.is_root) return Perm::kWrite;
  if (!LeaseValid(now) || now >= Time(std::chrono::nanoseconds(s.expiry_ns))) return Perm::kNone;
  return table_->HeldOf(s);
}

uint32_t Replica::TtlLeftIn(const BlockTable::Slot& s, Time now) const {
  if (cfg_.is_root) return cfg_.grant_ttl_ms;
  const Time until{std::chrono::nanoseconds(s.expiry_ns)};
  if (until <= now) return 0;
  return static_cast<uint32_t>(
      std::min<int64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count(), UINT32_MAX));
}

uint32_t Replica::TtlLeft(uint64_t block, Time now) const {
  if (cfg_.is_root) return cfg_.grant_ttl_ms;
  const Time until = ExpiryOf(block);
  if (until <= now) return 0;
  return static_cast<uint32_t>(
      std::min<int64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count(), UINT32_MAX));
}

bool Replica::HasCopy(uint64_t block) const {
  if (!table_) return false;
  BlockTable::Locked set = table_->Lock(block);
  BlockTable::Slot* s = set.Find(block);
  return s && s->valid;
}

Bytes Replica::CopyBytes(const BlockTable::Slot& s) const {
  if (!s.data) return Bytes::Zeros(block_size());  // a table without bytes
  // Cut from a chunk shared by consecutive copies: one allocation for many
  // blocks, and neighbours flushed together leave as one slice, uncopied
  // (RangeAdapter's Concat). A chunk lives while any of its slices does.
  const size_t bs = block_size();
  if (copy_.left < bs) {
    const size_t chunk = std::max<size_t>(bs, (1u << 20) / bs * bs);
    copy_.chunk = Bytes::Allocate(chunk, &copy_.write);
    copy_.left = chunk;
  }
  const size_t at = copy_.chunk.size() - copy_.left;
  std::memcpy(copy_.write + at, s.data, bs);
  copy_.left -= bs;
  return copy_.chunk.Slice(at, bs);
}

bool Replica::GetCopy(uint64_t block, Bytes* out) const {
  if (!table_) return false;
  BlockTable::Locked set = table_->Lock(block);
  BlockTable::Slot* s = set.Find(block);
  if (!s || !s->valid) return false;
  *out = CopyBytes(*s);
  return true;
}

uint32_t Replica::PutCopy(uint64_t block, const Bytes& data, bool dirty) {
  BlockTable::Locked set = table_->Lock(block);
  BlockTable::Slot* s = set.Find(block);
  if (!s) {
    LogError("volume " + cfg_.volume_name + ": internal error: bytes for block " + std::to_string(block) +
             " have no slot; dropped");
    return 0;
  }
  if (s->data) std::memcpy(s->data, data.data(), std::min<size_t>(data.size(), block_size()));
  s->valid = true;
  s->prefetched = false;
  ++s->writes;
  if (dirty) set.MarkDirty(s);
  else set.MarkClean(s);
  return s->writes;
}

void Replica::MarkClean(uint64_t block) {
  BlockTable::Locked set = table_->Lock(block);
  if (BlockTable::Slot* s = set.Find(block)) set.MarkClean(s);
}

void Replica::DropCopy(uint64_t block) {
  forwarded_.erase(block);
  BlockTable::Locked set = table_->Lock(block);
  BlockTable::Slot* s = set.Find(block);
  if (!s) return;
  set.MarkClean(s);
  s->valid = false;
  s->prefetched = false;
  s->forwarded = false;
  s->expiry_ns = 0;
  if (!cfg_.is_root) s->held = Perm::kNone;
  // The slot itself stays while the block's queue has work; else it goes.
  if (!Pinned(block) && BlockTable::Droppable(*s)) {
    table_->Free(set, s);
    wake_.insert(wake_.end(), set_waiters_[set.index()].begin(), set_waiters_[set.index()].end());
    set_waiters_.erase(set.index());
  }
}

void Replica::Changed(uint64_t block) {
  BlockTable::Locked set = table_->Lock(block);
  if (BlockTable::Slot* s = set.Find(block)) s->version = cfg_.is_root ? table_->NextVersion() : 0;
}

void Replica::SetForwarded(uint64_t block, bool on) {
  if (on) forwarded_.insert(block);
  else forwarded_.erase(block);
  BlockTable::Locked set = table_->Lock(block);
  if (BlockTable::Slot* s = set.Find(block)) s->forwarded = on;
}

void Replica::ForgetForwarded(const std::vector<uint64_t>& blocks) {
  for (uint64_t b : blocks) SetForwarded(b, false);
}

std::vector<uint64_t> Replica::DirtyBlocks() { return table_ ? table_->DirtyBlocks() : std::vector<uint64_t>{}; }

std::vector<uint64_t> Replica::HeldBlocks() {
  std::vector<uint64_t> out;
  if (!table_) return out;
  table_->ForEach([&](BlockTable::Locked&, BlockTable::Slot& s) {
    if (!s.empty() && (s.dirty || s.valid || table_->HeldOf(s) > Perm::kNone)) out.push_back(s.block);
  });
  std::sort(out.begin(), out.end());
  return out;
}

// ---- Queues ----

void Replica::Enqueue(uint64_t block, Job job, Time now) {
  now_ = now;
  if (job.from == kLocal && job.local_op) local_ops_[job.local_op] = block;
  runs_[block].jobs.push_back(std::move(job));
  Pump(block, now);
}

void Replica::Pump(uint64_t block, Time now) {
  auto it = runs_.find(block);
  if (it == runs_.end()) return;
  BlockRun& run = it->second;
  // Start() or a child's CONNECT is under way; or the parent said
  // IN_RECOVERY, and the run asks again later.
  if (!table_ || (!connected_ && !rejoining_) || now < run.retry_at) return Park(block, run);
  while (!run.jobs.empty() && run.acks == 0 && !run.waiting_parent && !run.recall && run.store_ops == 0) {
    Job& head = run.jobs.front();
    // With the parent link down, only reads the lease still covers go on.
    if (!connected_) {
      const GrantJob* g = head.as<GrantJob>();
      if (head.from != kLocal || !g || g->want != Perm::kRead || Held(block, now) < Perm::kRead)
        return Park(block, run);
    }
    if (!RoomUpstream(block, run, head, now)) return;
    if (!EnsureSlot(block, now)) return;
    run.waiting_slot = false;
    if (!Advance(block, head, now)) {
      // Waiting for nothing that will come by itself (the lease, a failed
      // child's grants, the root's authority): a tick looks again.
      if (run.acks == 0 && !run.waiting_parent && !run.recall && run.store_ops == 0) Park(block, run);
      return;
    }
    run.jobs.erase(run.jobs.begin());
  }
  // By key: Advance may have added runs for other blocks, and a rehash
  // moves nothing but iterators (`run` itself stays valid).
  if (run.jobs.empty() && run.acks == 0 && !run.waiting_parent && !run.recall && run.store_ops == 0) RetireRun(block);
}

void Replica::RetireRun(uint64_t block) {
  runs_.erase(block);
  // No longer pinned: its slot may be what a waiting block needs.
  const uint32_t set = table_->SetOf(block);
  if (auto w = set_waiters_.find(set); w != set_waiters_.end()) {
    wake_.insert(wake_.end(), w->second.begin(), w->second.end());
    set_waiters_.erase(w);
  }
  // A slot that lost its copy and has nothing else goes now.
  BlockTable::Locked locked = table_->Lock(block);
  BlockTable::Slot* s = locked.Find(block);
  if (s && !s->valid && BlockTable::Droppable(*s) && table_->HeldOf(*s) == (cfg_.is_root ? Perm::kWrite : Perm::kNone))
    table_->Free(locked, s);
}

void Replica::Park(uint64_t block, BlockRun& run) {
  if (run.parked) return;
  run.parked = true;
  parked_.push_back(block);
}

void Replica::ParkAll() {
  for (auto& [block, run] : runs_) Park(block, run);
}

void Replica::PumpAll(Time now) {
  std::vector<uint64_t> blocks = std::exchange(parked_, {});
  std::sort(blocks.begin(), blocks.end());  // a fixed order, for repeatable runs
  for (uint64_t b : blocks) {
    auto it = runs_.find(b);
    if (it == runs_.end() || !it->second.parked) continue;
    it->second.parked = false;
    if (it->second.recall) ServeRecall(b, now);
    else Pump(b, now);
  }
}

// ---- The upstream window ----

size_t Replica::UpstreamWindow() const {
  constexpr uint64_t kWindowBytes = 32u << 20;
  return std::max<size_t>(64, kWindowBytes / block_size());
}

bool Replica::MayGoUpstream(uint64_t block, const Job& head, Time now) const {
  return std::visit(
      [&](const auto& k) -> bool {
        using T = std::decay_t<decltype(k)>;
        if constexpr (std::is_same_v<T, GrantJob>) return Held(block, now) < k.want || !HasCopy(block);
        else if constexpr (std::is_same_v<T, FlushJob>) return k.stage == FlushJob::Stage::kStart || k.resend;
        else if constexpr (std::is_same_v<T, PutJob>) return k.stage != PutJob::Stage::kStored;
        else if constexpr (std::is_same_v<T, ForwardJob>) return k.stage == ForwardJob::Stage::kStart;
        else if constexpr (std::is_same_v<T, DropJob>)
          return k.stage == DropJob::Stage::kStart || k.stage == DropJob::Stage::kRelease;
        else if constexpr (std::is_same_v<T, RecoverJob>) return k.stage == RecoverJob::Stage::kStart;
        else if constexpr (std::is_same_v<T, EvictJob>) return k.stage == EvictJob::Stage::kStart;
        else return false;  // a release, a child's semi-sync bytes
      },
      head.kind);
}

bool Replica::RoomUpstream(uint64_t block, BlockRun& run, const Job& head, Time now) {
  if (cfg_.is_root || upstream_in_flight_ < UpstreamWindow() || !MayGoUpstream(block, head, now)) return true;
  if (!run.waiting_window) {
    run.waiting_window = true;
    window_waiters_.push_back(block);
  }
  return false;
}

void Replica::UpstreamDone() {
  if (upstream_in_flight_ > 0) --upstream_in_flight_;
  const size_t window = UpstreamWindow();
  // Woken a batch at a time, in the order they came, so that neighbours
  // go up together as ranges.
  if (window_waiters_.empty() || upstream_in_flight_ + window / 4 > window) return;
  for (size_t room = window - upstream_in_flight_; room > 0 && !window_waiters_.empty(); --room) {
    const uint64_t b = window_waiters_.front();
    window_waiters_.pop_front();
    if (auto it = runs_.find(b); it != runs_.end()) it->second.waiting_window = false;
    wake_.push_back(b);
  }
}

bool Replica::InstallNow(uint64_t block, Time now, uint64_t* costly) {
  uint64_t released = BlockTable::kNoBlock;
  {
    BlockTable::Locked set = table_->Lock(block);
    if (set.Find(block)) return true;
    BlockTable::Slot* victim = table_->ChooseVictim(set, [this](uint64_t b) { return Pinned(b); });
    if (!victim) return false;  // every way has work under way: one of them ends first
    // (With --kernel-cache a copy may also be in the kernel's pages, which
    // must go first: the eviction job drops them.)
    if (!victim->empty() && (!BlockTable::Droppable(*victim) || (cfg_.kernel_cache && victim->valid))) {
      if (costly) *costly = victim->block;
      return false;
    }
    // The parent is told, so that its grant record can go too.
    if (!victim->empty() && !cfg_.is_root && table_->HeldOf(*victim) > Perm::kNone &&
        now < Time(std::chrono::nanoseconds(victim->expiry_ns)))
      released = victim->block;
    table_->Install(set, victim, block);
  }
  if (released != BlockTable::kNoBlock && connected_) {
    Message up = Upstream(LocalJob(0), IoOp::kLock, released, Perm::kNone);
    CallParent(std::move(up), Call{CallKind::kRelease, released});
  }
  return true;
}

bool Replica::EnsureSlot(uint64_t block, Time now) {
  uint64_t evict = BlockTable::kNoBlock;
  if (InstallNow(block, now, &evict)) return true;
  auto& w = set_waiters_[table_->SetOf(block)];
  if (std::find(w.begin(), w.end(), block) == w.end()) w.push_back(block);
  runs_[block].waiting_slot = true;
  if (evict != BlockTable::kNoBlock) StartEvict(evict, now);
  return false;
}

bool Replica::Advance(uint64_t block, Job& j, Time now) {
  // A root without authority writes nothing, nor grants: SetAuthority or
  // Tick pumps the queue again.
  if (cfg_.is_root && !LeaseValid(now)) return false;
  return std::visit(
      [&](auto& kind) -> bool {
        using T = std::decay_t<decltype(kind)>;
        if constexpr (std::is_same_v<T, GrantJob>) return AdvanceGrant(block, j, kind, now);
        else if constexpr (std::is_same_v<T, ReleaseJob>) return AdvanceRelease(block, j, now);
        else if constexpr (std::is_same_v<T, PutJob>) return AdvancePut(block, j, kind, now);
        else if constexpr (std::is_same_v<T, FlushJob>) return AdvanceFlush(block, j, kind, now);
        else if constexpr (std::is_same_v<T, StoreForwardJob>) return AdvanceStoreForward(block, j, kind, now);
        else if constexpr (std::is_same_v<T, ForwardJob>) return AdvanceForward(block, j, kind, now);
        else if constexpr (std::is_same_v<T, DropJob>) return AdvanceDrop(block, j, kind, now);
        else if constexpr (std::is_same_v<T, RecoverJob>) return AdvanceRecover(block, j, kind, now);
        else return AdvanceEvict(block, j, kind, now);
      },
      j.kind);
}

// A job whose upstream request must go again. Most redo their last stage;
// a FLUSH only sends its request again, since its first stage has already
// taken the sender's data and permission (running it again would take a
// child's retried FLUSH for a stale one).
void Replica::Restage(Job& j) {
  if (FlushJob* f = j.as<FlushJob>(); f && f->stage == FlushJob::Stage::kSent) f->resend = true;
  if (PutJob* p = j.as<PutJob>(); p && p->stage == PutJob::Stage::kAnswered) p->stage = PutJob::Stage::kSend;
  if (ForwardJob* f = j.as<ForwardJob>()) f->stage = ForwardJob::Stage::kStart;
  if (RecoverJob* r = j.as<RecoverJob>()) r->stage = RecoverJob::Stage::kStart;
  if (DropJob* d = j.as<DropJob>()) {
    if (d->stage == DropJob::Stage::kPassedUp) d->stage = DropJob::Stage::kStart;
    if (d->stage == DropJob::Stage::kReleased) d->stage = DropJob::Stage::kRelease;
  }
  j.upstream_reply.reset();
}

void Replica::CallUpstream(uint64_t block, Job& j, Message up, Time now) {
  j.sent = now;
  j.upstream_reply.reset();
  CallParent(std::move(up), Call{CallKind::kUpstream, block, 0, Perm::kNone, now});
  runs_[block].waiting_parent = true;
}

// ---- The root's store ----

void Replica::StoreRequest(StoreOp::Kind kind, uint64_t block, StoreWait wait, Bytes data) {
  // Contiguous reads and writes asked for in one event go as one request.
  if (!effects_.store.empty() && kind != StoreOp::Kind::kSync) {
    StoreOp& last = effects_.store.back();
    StoreWait& lw = store_waits_.at(last.id);
    if (last.kind == kind && last.first + last.count == block && lw.sequence == wait.sequence && lw.fill == wait.fill &&
        uint64_t{last.count + 1} * block_size() <= RangeAdapter::kMaxRangeBytes) {
      ++last.count;
      ++lw.count;
      lw.writes.insert(lw.writes.end(), wait.writes.begin(), wait.writes.end());
      if (kind == StoreOp::Kind::kWrite) {
        if (last.data.Adjoins(data)) {
          last.data.Extend(data);
        } else {
          uint8_t* w;
          Bytes joined = Bytes::Allocate(last.data.size() + data.size(), &w);
          std::memcpy(w, last.data.data(), last.data.size());
          std::memcpy(w + last.data.size(), data.data(), data.size());
          last.data = joined;
        }
      }
      ++runs_[block].store_ops;
      return;
    }
  }
  StoreOp op;
  op.id = next_store_++;
  op.kind = kind;
  op.first = block;
  op.count = kind == StoreOp::Kind::kSync ? 0 : 1;
  op.data = std::move(data);
  wait.first = block;
  wait.count = op.count;
  store_waits_[op.id] = std::move(wait);
  if (kind != StoreOp::Kind::kSync) ++runs_[block].store_ops;
  effects_.store.push_back(std::move(op));
}

void Replica::FillFromStore(uint64_t block, uint64_t fill) {
  {
    BlockTable::Locked set = table_->Lock(block);
    BlockTable::Slot* s = set.Find(block);
    if (!s) return;
    s->busy = true;  // the fast path stays out while the store fills it
  }
  StoreWait wait{StoreWait::Kind::kFill};
  wait.fill = fill;
  StoreRequest(StoreOp::Kind::kRead, block, std::move(wait));
}

size_t Replica::WriteBack(const std::vector<uint64_t>& blocks, uint64_t sequence) {
  // Contiguous blocks go as one buffer, so that their writes join into one
  // store request without copying again: a child's bytes as they came (the
  // slices of one FLUSH adjoin), else copies of the slots made side by side.
  const size_t bs = block_size();
  const size_t most = RangeAdapter::kMaxRangeBytes / bs;
  size_t written = 0;
  for (size_t i = 0; i < blocks.size();) {
    size_t n = 1;
    while (i + n < blocks.size() && n < most && blocks[i + n] == blocks[i] + n) ++n;
    uint8_t* w = nullptr;
    Bytes run;
    for (size_t k = 0; k < n; ++k) {
      const uint64_t b = blocks[i + k];
      uint32_t stored_writes = 0;
      const Bytes* stored = StoredBytes(b, &stored_writes);
      uint32_t writes = 0;
      Bytes data;
      {
        BlockTable::Locked set = table_->Lock(b);
        BlockTable::Slot* s = set.Find(b);
        if (!s || !s->dirty) continue;
        writes = s->writes;
        if (stored && stored_writes == writes) {
          data = *stored;  // the slot holds these very bytes
        } else {
          if (!w) run = Bytes::Allocate(n * bs, &w);
          if (s->data) std::memcpy(w + k * bs, s->data, bs);
          else std::memset(w + k * bs, 0, bs);
          data = run.Slice(k * bs, bs);
        }
      }
      StoreWait wait{StoreWait::Kind::kWrite};
      wait.writes.push_back(writes);
      wait.sequence = sequence;
      StoreRequest(StoreOp::Kind::kWrite, b, std::move(wait), std::move(data));
      ++written;
    }
    i += n;
  }
  return written;
}

const Bytes* Replica::StoredBytes(uint64_t block, uint32_t* writes) const {
  auto r = runs_.find(block);
  if (r == runs_.end()) return nullptr;
  if (r->second.stored) {
    *writes = r->second.stored_writes;
    return &*r->second.stored;
  }
  if (r->second.jobs.empty()) return nullptr;
  const FlushJob* f = r->second.jobs.front().as<FlushJob>();
  if (!f || f->own || !f->data || f->data->size() != block_size() || f->stored_writes == 0) return nullptr;
  *writes = f->stored_writes;
  return &*f->data;
}

void Replica::StartDurability(const std::vector<uint64_t>& blocks, uint64_t barrier, uint64_t for_block, bool sync) {
  if (!barrier) ++runs_[for_block].store_ops;  // its queue waits for the whole sequence
  if (!barrier && sync) {
    // A FORCE_SYNC range arrives as one job per block: their writes go
    // out as one run and share one sync.
    gathered_.push_back(for_block);
    return;
  }
  const uint64_t seq = next_store_++;
  Durability& d = durability_[seq];
  d.barrier = barrier;
  if (!barrier) d.blocks = {for_block};
  d.sync = sync;
  d.todo = blocks;
  FeedDurability(seq);
}

void Replica::StartGathered() {
  if (gathered_.empty()) return;
  const uint64_t seq = next_store_++;
  Durability& d = durability_[seq];
  d.blocks = std::exchange(gathered_, {});
  std::sort(d.blocks.begin(), d.blocks.end());  // neighbours together: one write each run
  d.todo = d.blocks;
  FeedDurability(seq);
}

void Replica::FeedDurability(uint64_t seq) {
  auto it = durability_.find(seq);
  if (it == durability_.end()) return;
  Durability& d = it->second;
  // A window at a time: the bytes copied out for the store stay bounded,
  // however much is dirty.
  const size_t window = UpstreamWindow();
  while (d.in_flight < window && d.next < d.todo.size()) {
    const size_t n = std::min(window - d.in_flight, d.todo.size() - d.next);
    const std::vector<uint64_t> part(d.todo.begin() + d.next, d.todo.begin() + d.next + n);
    d.next += n;
    d.in_flight += WriteBack(part, seq);
  }
  if (d.next < d.todo.size()) return;  // the rest once the window has room
  if (!d.sync) {
    if (d.in_flight == 0) FinishDurability(seq);
    return;
  }
  if (d.synced) return;
  d.synced = true;
  // Asked for at once, with writes still under way: syncs run after every
  // write asked for before them (effects.h), so this one covers them all,
  // and the sequence ends one trip to the store sooner.
  StoreRequest(StoreOp::Kind::kSync, 0, StoreWait{StoreWait::Kind::kSync, 0, 0, {}, seq});
}

void Replica::FlushRoot(uint64_t barrier) { StartDurability(DirtyBlocks(), barrier, 0); }

void Replica::StoreDone(uint64_t id, const Status& st, Time now) {
  auto it = store_waits_.find(id);
  if (it == store_waits_.end()) return;
  StoreWait w = std::move(it->second);
  store_waits_.erase(it);
  if (!st.ok())
    LogError("volume " + cfg_.volume_name + ": store " +
             (w.kind == StoreWait::Kind::kFill ? "read" : w.kind == StoreWait::Kind::kWrite ? "write" : "sync") +
             (w.kind == StoreWait::Kind::kSync ? "" : " of blocks " + std::to_string(w.first) + "+" + std::to_string(w.count)) +
             " failed: " + st.ToString());
  for (uint32_t k = 0; k < w.count; ++k) {
    const uint64_t b = w.first + k;
    {
      BlockTable::Locked set = table_->Lock(b);
      if (BlockTable::Slot* s = set.Find(b)) {
        if (w.kind == StoreWait::Kind::kFill) {
          s->busy = false;
          if (st.ok()) {
            s->valid = true;
            s->version = table_->NextVersion();  // a new name: the old one may have been given out before
          }
        } else if (w.kind == StoreWait::Kind::kWrite && st.ok()) {
          set.MarkCleanIf(s, w.writes[k]);  // unless written again meanwhile
        }
      }
    }
    BlockRun& run = runs_[b];
    --run.store_ops;
    if (!st.ok() && !run.jobs.empty() && w.kind == StoreWait::Kind::kFill) {
      Job& head = run.jobs.front();
      Fail(head, WireStatus::kBusy, "cannot read block " + std::to_string(b) + " from the store: " + st.message());
      run.jobs.erase(run.jobs.begin());
    }
    if (!st.ok() && !run.jobs.empty() && w.kind == StoreWait::Kind::kWrite && !w.sequence)
      run.jobs.front().store_error = st;  // an eviction's write-back
    wake_.push_back(b);
  }
  if (w.fill) return FillDone(w.fill, w.first, w.count, now);
  if (!w.sequence) return;
  auto d = durability_.find(w.sequence);
  if (d == durability_.end()) return;
  if (!st.ok() && d->second.error.ok()) d->second.error = st;
  if (w.kind == StoreWait::Kind::kWrite) {
    Durability& dur = d->second;
    dur.in_flight -= std::min<size_t>(dur.in_flight, w.count);
    // More once half the window is free; synced even after a failed write
    // (the others are made durable), and the first failure reported.
    if (dur.in_flight == 0 || (dur.next < dur.todo.size() && dur.in_flight <= UpstreamWindow() / 2))
      FeedDurability(w.sequence);
    return;
  }
  FinishDurability(w.sequence);  // the sync: the sequence is over
  (void)now;
}

void Replica::FinishDurability(uint64_t sequence) {
  auto d = durability_.find(sequence);
  if (d == durability_.end()) return;
  Durability done = std::move(d->second);
  durability_.erase(d);
  if (done.barrier) return sync_.RootFlushed(done.barrier, done.error);
  for (uint64_t b : done.inline_blocks) {
    BlockRun& run = runs_[b];
    --run.store_ops;
    run.stored.reset();
    wake_.push_back(b);
  }
  if (!done.inline_blocks.empty())
    AnswerFlushParts(done.child, done.range_key, done.range_first, done.inline_blocks, done.error);
  for (uint64_t b : done.blocks) {
    BlockRun& run = runs_[b];
    --run.store_ops;
    if (!run.jobs.empty()) {
      run.jobs.front().durable = true;
      run.jobs.front().store_error = done.error;
    }
    wake_.push_back(b);
  }
}

void Replica::SendUp(uint64_t barrier) {
  Message up;
  up.opcode = Opcode::kIoRequest;
  up.io_op = IoOp::kFlush;
  up.volume_id = parent_volume_id_;
  up.originator = cfg_.self;
  up.hops_left = cfg_.max_hops;
  Call c{CallKind::kSync};
  c.tag = barrier;
  CallParent(std::move(up), c);
}

}  // namespace vshare
