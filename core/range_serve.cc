// Serving a child's range GET or LOCK.
//
// The common case costs little: every block of the range that can be
// granted on the spot (nothing queued for it, the grant needs no recall
// and no question to our own parent, and the bytes are here) is granted
// and answered at once, a reply part per run of such blocks, with no job,
// no per-block message and the bytes copied once, into the range's answer
// buffer. The other blocks become per-block requests and take the usual
// way through their queues (grant.cc); their answers become parts too.
// The grant is the same either way: Step() decides, on the same state.
#include <algorithm>
#include <cstring>

#include "core/conversions.h"
#include "core/log.h"
#include "core/replica.h"

namespace vshare {

bool Replica::GrantInline(uint64_t block, LinkId child, ChildIndex who, Perm want, bool get, uint64_t kept_version,
                          uint8_t* dst, InlineGrant* out, Time now) {
  if (runs_.count(block) || BlockedByFailed(block, want, child)) return false;
  BlockTable::Locked set = table_->Lock(block);
  BlockTable::Slot* s = set.Find(block);
  if (!s || s->busy) return false;
  BlockState st = Load(*s);
  st.held = HeldIn(*s, now);
  const Transition t = Step(st, Event{Event::Kind::kRequest, who, want});
  if (t.actions.empty() || t.actions.front().kind != Action::Kind::kGrant) return false;
  // A child that kept a copy of this very version needs only the grant.
  const bool unchanged = get && kept_version != 0 && kept_version == s->version && (cfg_.is_root || s->valid);
  out->data = get && !unchanged;
  if (out->data && !s->valid) return false;  // the bytes must come first
  // Recorded before the bytes are taken, under the set's lock: a local
  // write on the fast path either went before (and is in them) or sees
  // the child's grant and goes to the engine.
  StoreIn(*s, t.next);
  if (out->data && dst && s->data) std::memcpy(dst, s->data, block_size());
  out->version = s->version;
  out->ttl_ms = TtlLeftIn(*s, now);
  return true;
}

void Replica::ServeRange(LinkId child, const Message& m, Time now) {
  const uint64_t key = ranges_.Open(false, child, m);
  std::vector<uint32_t> all(m.blocks());
  for (uint32_t i = 0; i < all.size(); ++i) all[i] = i;
  ServeParts(child, key, m, all, /*may_fill=*/true, now);
}

void Replica::ServeParts(LinkId child, uint64_t key, const Message& m, const std::vector<uint32_t>& indices,
                         bool may_fill, Time now) {
  const uint64_t first = *m.block_num;
  const bool get = m.io_op == IoOp::kGet;
  const Perm want = get ? std::max(FromWire(m.permissions, Perm::kRead), Perm::kRead)
                        : FromWire(m.permissions, Perm::kWrite);
  const ChildIndex who = children_.IndexOf(child);
  // Only what the per-block way would grant at once, under the same
  // conditions; anything unusual (a refusal to give, a release) takes it.
  const bool inline_ok = (get || m.io_op == IoOp::kLock) && want != Perm::kNone && who != kNoIndex && !rejoining_ &&
                         children_.Joined(child) && (!cfg_.is_root || LeaseValid(now)) && m.originator != cfg_.self &&
                         !child_leases_.IsFailed(child) &&
                         !(cfg_.kernel_cache && want == Perm::kWrite);  // the kernel's pages go first: per block
  // The root reads what it lacks from its store, a run at a time, and
  // serves those blocks the same way once they are in (FillDone).
  const bool fill_ok = may_fill && inline_ok && cfg_.is_root && get && table_->keeps_data();
  std::vector<uint32_t> rest, fill;
  struct Run {
    uint32_t start = 0, count = 0;
    bool data = false;
    uint32_t ttl_ms = UINT32_MAX;
    std::vector<uint64_t> versions;
  } run;
  auto flush = [&] {
    if (run.count == 0) return;
    Message part = ReplyFor(RangeAdapter::PartXid(key, run.start));
    part.count = run.count;
    part.volume_id = cfg_.volume_id;
    part.block_num = first + run.start;
    part.permissions = ToWire(want);
    part.ttl_ms = run.ttl_ms;
    part.hb_ttl_ms = hb_ttl_ms_;
    if (std::any_of(run.versions.begin(), run.versions.end(), [](uint64_t v) { return v != 0; }))
      part.versions = std::move(run.versions);
    if (run.data)
      part.data = table_->keeps_data() ? ranges_.AnswerSlice(key, run.start, run.count)
                                       : Bytes::Zeros(size_t{run.count} * block_size());
    SendToChild(child, std::move(part));
    run = Run{};
  };
  for (uint32_t i : indices) {
    const uint64_t kept = m.versions ? (*m.versions)[i] : 0;
    Bytes slice;
    uint8_t* dst = inline_ok && get && table_->keeps_data() ? ranges_.AnswerBuffer(key, i, &slice) : nullptr;
    InlineGrant g;
    if (!inline_ok || !GrantInline(first + i, child, who, want, get, kept, dst, &g, now)) {
      flush();
      if (fill_ok && FillForRange(first + i, child, who, want, now)) fill.push_back(i);
      else rest.push_back(i);
      continue;
    }
    if (run.count > 0 && (run.data != g.data || run.start + run.count != i)) flush();
    if (run.count == 0) {
      run.start = i;
      run.data = g.data;
    }
    ++run.count;
    run.ttl_ms = std::min(run.ttl_ms, g.ttl_ms);
    run.versions.push_back(g.version);
  }
  flush();
  if (!fill.empty()) {
    const uint64_t id = next_store_++;
    RangeFill& f = fills_[id];
    f.child = child;
    f.key = key;
    f.request = m;
    f.pending = fill.size();
    for (uint32_t i : fill) FillFromStore(first + i, id);
  }
  for (uint32_t i : rest) HandleChildMessage(child, ranges_.Request(key, m, i), now);
}

bool Replica::FillForRange(uint64_t block, LinkId child, ChildIndex who, Perm want, Time now) {
  if (runs_.count(block) || BlockedByFailed(block, want, child) || !InstallNow(block, now)) return false;
  BlockTable::Locked set = table_->Lock(block);
  BlockTable::Slot* s = set.Find(block);
  if (!s || s->busy || s->valid) return false;
  const Transition t = Step(Load(*s), Event{Event::Kind::kRequest, who, want});
  return !t.actions.empty() && t.actions.front().kind == Action::Kind::kGrant;
}

void Replica::FillDone(uint64_t id, uint64_t first, uint32_t count, Time now) {
  auto it = fills_.find(id);
  if (it == fills_.end()) return;
  const LinkId child = it->second.child;
  const uint64_t key = it->second.key;
  const Message request = it->second.request;
  if ((it->second.pending -= std::min<size_t>(it->second.pending, count)) == 0) fills_.erase(it);
  // Each block's run existed only for the read; Pump lets it go (and runs
  // first whatever queued behind the read: it came later, but asked for
  // another grant, which Step() decides on the same state either way).
  std::vector<uint32_t> indices;
  for (uint64_t b = first; b < first + count; ++b) {
    Pump(b, now);
    indices.push_back(static_cast<uint32_t>(b - *request.block_num));
  }
  ServeParts(child, key, request, indices, /*may_fill=*/false, now);
}

// What AdvanceFlush does for a child's FLUSH at the root, up to the store:
// the bytes into the slot, a new version, the child's grant down to what it
// keeps. Only when the child holds WRITE (else the general way answers
// with what a recall left it) and the slot is not being filled.
bool Replica::FlushInline(uint64_t block, ChildIndex who, Perm keep, const Bytes& data, uint32_t* stored_writes) {
  BlockTable::Locked set = table_->Lock(block);
  BlockTable::Slot* s = set.Find(block);
  if (!s || s->busy) return false;
  const BlockState st = Load(*s);
  if (st.GrantOf(who) != Perm::kWrite) return false;
  if (s->data) std::memcpy(s->data, data.data(), block_size());
  s->valid = true;
  s->prefetched = false;
  ++s->writes;
  set.MarkDirty(s);
  s->version = table_->NextVersion();
  StoreIn(*s, Step(st, Event{Event::Kind::kRelease, who, keep}).next);
  *stored_writes = s->writes;
  return true;
}

void Replica::ServeFlushRange(LinkId child, const Message& m, Time now) {
  const uint64_t key = ranges_.Open(false, child, m);
  const uint64_t first = *m.block_num;
  const uint32_t n = m.blocks();
  const size_t bs = block_size();
  const ChildIndex who = children_.IndexOf(child);
  const Perm keep = FromWire(m.permissions, Perm::kNone);
  const bool sync = (m.flags & msg_flags::kForceSync) || IsSyncChild(child);
  // The conditions HandleChildMessage checks before it queues a block's
  // FLUSH, and none of what makes AdvanceFlush wait: a peer root (written
  // through first), the kernel's pages.
  const bool inline_ok = cfg_.is_root && !cfg_.write_through && !cfg_.kernel_cache && LeaseValid(now) &&
                         who != kNoIndex && children_.Joined(child) && m.originator != cfg_.self &&
                         !(m.flags & msg_flags::kRecoveryOp) && m.data && m.data->size() == size_t{n} * bs;
  std::vector<uint64_t> stored;  // stored inline: answered together
  size_t answered = 0;           // stored[answered...] not answered yet
  auto answer_now = [&] {
    if (sync || answered == stored.size()) return;
    AnswerFlushParts(child, key, first, std::vector<uint64_t>(stored.begin() + answered, stored.end()), Status::Ok());
    answered = stored.size();
  };
  for (uint32_t i = 0; i < n; ++i) {
    const uint64_t b = first + i;
    const Bytes data = inline_ok ? m.data->Slice(i * bs, bs) : Bytes();
    uint32_t writes = 0;
    if (!inline_ok || runs_.count(b) || !FlushInline(b, who, keep, data, &writes)) {
      answer_now();  // answers stay in block order
      HandleChildMessage(child, ranges_.Request(key, m, i), now);
      continue;
    }
    stored.push_back(b);
    if (sync) {  // the block's queue waits for its durability
      BlockRun& run = runs_[b];
      ++run.store_ops;
      run.stored = data;
      run.stored_writes = writes;
    }
  }
  answer_now();
  if (!sync || stored.empty()) return;
  // One sequence for the range: its writes as one run, and one sync.
  const uint64_t seq = next_store_++;
  Durability& d = durability_[seq];
  d.todo = stored;
  d.inline_blocks = std::move(stored);
  d.child = child;
  d.range_key = key;
  d.range_first = first;
  FeedDurability(seq);
}

// The answers to blocks `blocks` (ascending) of open FLUSH range `key`: a
// plain OK part per run of neighbours, as 001's Example Four answers a
// FLUSH that leaves the child what it asked to keep; or, the store having
// failed, an error for each, so that the writer's fsync reports it.
void Replica::AnswerFlushParts(LinkId child, uint64_t key, uint64_t first, const std::vector<uint64_t>& blocks,
                               const Status& error) {
  if (!error.ok()) {
    LogError("volume " + cfg_.volume_name + ": cannot store " + std::to_string(blocks.size()) +
             " flushed blocks from block " + std::to_string(blocks.front()) + ": " + error.message());
    for (uint64_t b : blocks)
      SendToChild(child, ErrorReply(RangeAdapter::PartXid(key, static_cast<uint32_t>(b - first)), WireStatus::kBusy));
    return;
  }
  for (size_t i = 0; i < blocks.size();) {
    size_t run = 1;
    while (i + run < blocks.size() && blocks[i + run] == blocks[i] + run) ++run;
    Message part = ReplyFor(RangeAdapter::PartXid(key, static_cast<uint32_t>(blocks[i] - first)));
    part.count = static_cast<uint32_t>(run);
    part.block_num = blocks[i];
    SendToChild(child, std::move(part));
    i += run;
  }
}

}  // namespace vshare
