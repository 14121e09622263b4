// PUT: a write-through. Every other copy below this node goes first, then
// the data travels up to the root; the writer keeps no permission
// (001, Example Three).
#include "core/replica.h"

namespace vshare {

bool Replica::AdvancePut(uint64_t block, Job& j, PutJob& p, Time now) {
  auto blocked = [&] {
    if (!BlockedByFailed(block, Perm::kWrite, j.from)) return false;
    if (j.from != kLocal) Fail(j, WireStatus::kInRecovery, "block " + std::to_string(block) + " waits for a failed child's lease");
    return true;
  };
  auto release_writer = [&] {
    if (j.from != kLocal)
      Store(block, Step(StateOf(block), Event{Event::Kind::kRelease, children_.Find(j.from), Perm::kNone}).next);
  };
  auto reply = [&](std::optional<uint32_t> ttl, std::optional<uint64_t> version) {
    release_writer();
    Message r = ReplyFor(j.reply_xid);
    r.volume_id = cfg_.volume_id;
    r.block_num = block;
    r.ttl_ms = ttl;
    r.hb_ttl_ms = hb_ttl_ms_;
    if (version) r.version = *version;
    Finish(j, r);
    return true;
  };
  if (p.stage == PutJob::Stage::kInvalidate) {
    if (blocked()) return j.from != kLocal;  // a local one waits for Tick
    p.stage = PutJob::Stage::kSend;
    const BlockState st = StateOf(block);
    const ChildIndex writer = children_.Find(j.from);
    bool sent = false;
    for (uint64_t bits = st.holders; bits; bits &= bits - 1) {
      const ChildIndex c = __builtin_ctzll(bits);
      if (c == writer) continue;
      Invalidate(block, children_.LinkOf(c), Perm::kNone, now);
      sent = true;
    }
    if (sent) return false;
  }
  if (p.stage == PutJob::Stage::kSend) {
    // An invalidation failed meanwhile: that child's grant stands until its
    // lease is over.
    if (blocked()) return j.from != kLocal;
    if (cfg_.is_root) {
      PutCopy(block, p.data, /*dirty=*/true);
      Changed(block);
      p.stage = PutJob::Stage::kStored;
      if (!DurableIfForced(block, j)) return false;
    } else {
      if (j.hops == 0) {
        Fail(j, WireStatus::kLoopDetected, "hops ran out");
        return true;
      }
      DropCopy(block);  // our own copy is about to be stale
      Message up = Upstream(j, IoOp::kPut, block, Perm::kWrite);
      up.data = p.data;
      p.stage = PutJob::Stage::kAnswered;
      CallUpstream(block, j, std::move(up), now);
      return false;
    }
  }
  if (p.stage == PutJob::Stage::kStored) {
    if (!DurableIfForced(block, j)) return false;
    if (!j.store_error.ok()) {
      Fail(j, WireStatus::kBusy, "cannot store block " + std::to_string(block) + ": " + j.store_error.message());
      return true;
    }
    return reply(cfg_.grant_ttl_ms, StateOf(block).version);
  }
  // kAnswered: the parent answered.
  const Message& up = *j.upstream_reply;
  if (up.opcode != Opcode::kOkReply) {
    Fail(j, up.status.value_or(WireStatus::kBusy), "the parent refused the PUT");
    return true;
  }
  std::optional<uint32_t> ttl;
  if (up.ttl_ms) {
    const Time until = j.sent + std::chrono::milliseconds(*up.ttl_ms);
    ttl = until > now ? static_cast<uint32_t>(std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count()) : 0;
  }
  return reply(ttl, up.version);
}

}  // namespace vshare
