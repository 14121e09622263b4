// Making room in the table. A slot is reused for another block only once
// nothing depends on it: children's grants are recalled first (a node's
// subtree holds only what the node itself has room for), dirty bytes go up
// (FLUSH keeping nothing) or, at the root, to the store, bytes only the
// parent holds (semi-sync) a level further up, and the parent is told the
// copy is gone so its own grant record can go too.
#include "core/log.h"
#include "core/replica.h"

namespace vshare {

void Replica::StartEvict(uint64_t block, Time now) {
  if (runs_.count(block)) return;  // under way already, or busy with other work
  Job j = LocalJob(0);
  j.kind = EvictJob{};
  Enqueue(block, std::move(j), now);
}

bool Replica::AdvanceEvict(uint64_t block, Job& j, EvictJob& e, Time now) {
  if (e.stage == EvictJob::Stage::kWritten) {  // the root's write-back came back
    if (!j.store_error.ok()) {
      // The copy stays, dirty; what waited for its slot fails as it would
      // have failed to write it itself.
      const uint32_t set = table_->SetOf(block);
      std::vector<uint64_t> waiting = std::move(set_waiters_[set]);
      set_waiters_.erase(set);
      for (uint64_t b : waiting) {
        auto run = runs_.find(b);
        if (run == runs_.end() || run->second.jobs.empty()) continue;
        Fail(run->second.jobs.front(), WireStatus::kBusy,
             "no room for block " + std::to_string(b) + ": writing block " + std::to_string(block) +
                 " back to the store failed: " + j.store_error.message());
        run->second.jobs.erase(run->second.jobs.begin());
        run->second.waiting_slot = false;
        wake_.push_back(b);
      }
      return true;
    }
    e.stage = EvictJob::Stage::kStart;  // and look again: it may have been written since
  }
  if (!KernelPagesGone(block, now)) return false;  // PagesDropped comes back
  const BlockState st = StateOf(block);
  if (st.holders != 0) {
    // A failed child's grant stands until its lease is over (Tick comes back).
    if (BlockedByFailed(block, Perm::kWrite, kLocal)) return false;
    for (uint64_t bits = st.holders; bits; bits &= bits - 1)
      Invalidate(block, children_.LinkOf(__builtin_ctzll(bits)), Perm::kNone, now);
    e.stage = EvictJob::Stage::kRecalled;
    return false;  // the acks come back, and so do we
  }
  if (IsDirty(block)) {
    if (cfg_.is_root) {
      e.stage = EvictJob::Stage::kWritten;
      j.store_error = Status::Ok();
      WriteBack({block}, 0);
      return false;
    }
    FlushJob f;  // a FLUSH keeping nothing
    f.own = true;
    f.keep = Perm::kNone;
    j.kind = std::move(f);
    return AdvanceFlush(block, j, *j.as<FlushJob>(), now);
  }
  if (Forwarded(block)) {  // the parent alone has these bytes: they go a level up first
    j.kind = DropJob{};
    return AdvanceDrop(block, j, *j.as<DropJob>(), now);
  }
  if (!cfg_.is_root && Held(block, now) > Perm::kNone && connected_) {
    Message up = Upstream(j, IoOp::kLock, block, Perm::kNone);
    CallParent(std::move(up), Call{CallKind::kRelease, block});
  }
  DropCopy(block);
  KernelPagesUsed(block);
  table_->CountEviction();
  return true;
}

}  // namespace vshare
