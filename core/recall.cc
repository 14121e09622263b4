// The parent's INVALIDATE (a recall) and PUSH. A recall is never queued
// behind the block's requests: it recalls the children's grants at once
// and answers when they have. Waiting only ever points downward (a parent
// waits for its children, never the reverse), so the tree cannot deadlock.
#include "core/log.h"
#include "core/replica.h"

namespace vshare {

void Replica::ServeRecall(uint64_t block, Time now) {
  BlockRun& run = runs_[block];
  Recall& rc = *run.recall;
  const bool resident = table_->Lock(block).Find(block) != nullptr;
  if (resident) {
    // Every live grant above the target is recalled, including one taken
    // while the recall waited (a RECOVER claim), each child once.
    const BlockState st = StateOf(block);
    for (uint64_t bits = st.holders; bits; bits &= bits - 1) {
      const ChildIndex c = __builtin_ctzll(bits);
      const LinkId link = children_.LinkOf(c);
      if (st.GrantOf(c) > rc.to && !child_leases_.IsFailed(link) && !(rc.recalled >> c & 1)) {
        rc.recalled |= uint64_t{1} << c;
        Invalidate(block, link, rc.to, now);
        rc.invalidated_children = true;
      }
    }
    if (run.acks > 0) return;
    // A failed child's grant stands until its lease is over (Tick comes back).
    if (BlockedByFailed(block, rc.to == Perm::kNone ? Perm::kWrite : Perm::kRead, kLocal)) return Park(block, run);
  }
  // The kernel's pages of the block go first (kernel_pages.cc): until they
  // have, the old bytes are still what this node reads.
  if (resident && rc.to == Perm::kNone && !KernelPagesGone(block, now)) return;
  Message r = ReplyFor(rc.reply_xid);
  if (resident) {
    // Local access loses the permission first, so no local write can slip
    // in after the bytes are taken.
    BlockState st = StateOf(block);
    st.held = std::min(st.held, rc.to);
    Store(block, st);
    BlockTable::Locked set = table_->Lock(block);
    BlockTable::Slot* s = set.Find(block);
    if (s->dirty && s->valid) {
      // Dirty data goes up with the reply: no acknowledged write is lost.
      r.data = CopyBytes(*s);
      r.version = s->version;
      set.MarkClean(s);
    }
  }
  // A sync writer's bytes that leave with a recall to READ are not durable
  // yet, and the write they belong to completes only with a barrier
  // (DurableByBarrier). Until a barrier has taken them to the root, this
  // node still answers for them, as for bytes it FORWARDed: if the parent
  // dies holding them, it claims them back from the READ copy it keeps.
  const bool still_ours = resident && r.data && rc.to == Perm::kRead &&
                          (cfg_.connect_flags & connect_flags::kSyncWrite) != 0;
  if (rc.invalidated_children) {  // a proxy names what it answers for (Example Three, step 6)
    r.volume_id = parent_volume_id_;
    r.block_num = block;
  }
  if (resident) {
    if (rc.to < Perm::kWrite) SetForwarded(block, still_ours);  // else the parent took it back: its duty now
    if (rc.to == Perm::kNone) DropCopy(block);
  }
  KernelPagesUsed(block);
  std::vector<uint64_t> more = std::move(rc.more_xids);
  run.recall.reset();
  SendToParent(std::move(r));
  for (uint64_t xid : more) SendToParent(ReplyFor(xid));
  Pump(block, now);
}

void Replica::HandlePush(const Message& m, Time now) {
  if (!m.block_num || !m.data || m.data->size() != block_size() || !m.ttl_ms || !table_ || *m.block_num >= block_count())
    return SendToParent(ErrorReply(m.xid, WireStatus::kBadParamValue));
  // Unsolicited data: kept as a READ copy where a slot is free for it and
  // the block is not busy here.
  const uint64_t block = *m.block_num;
  if (!runs_.count(block) && StateOf(block).held <= Perm::kRead && table_->Lock(block).Find(block)) {
    PutCopy(block, *m.data, false);
    BlockState st = StateOf(block);
    st.held = Perm::kRead;
    Store(block, st);
    {
      BlockTable::Locked set = table_->Lock(block);
      if (BlockTable::Slot* s = set.Find(block)) s->version = m.version.value_or(0);
    }
    SetExpiry(block, now + std::chrono::milliseconds(*m.ttl_ms / 2));  // no round trip to go by: halve it
  }
  if (m.xid) SendToParent(ReplyFor(m.xid));
}

}  // namespace vshare
