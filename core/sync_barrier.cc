#include "core/sync_barrier.h"

#include <algorithm>

namespace vshare {

namespace {
const char* kLostWrites = "writes made here were lost when the parent failed (see the log)";
}

uint64_t SyncBarrier::New(LinkId from, uint64_t xid, uint64_t op, bool drop) {
  const uint64_t id = next_++;
  Barrier& b = barriers_[id];
  b.from = from;
  b.reply_xid = xid;
  b.local_op = op;
  b.drop = drop;
  b.forwarded = host_->ForwardedBlocks();
  if (from == kLocal && !drop && writes_lost_) {  // fsync reports a loss once, as the kernel does
    writes_lost_ = false;
    b.error = Status::IOError(kLostWrites);
  }
  return id;
}

void SyncBarrier::Start(LinkId from, uint64_t xid, uint64_t op) {
  const uint64_t id = New(from, xid, op, false);
  barriers_[id].todo = host_->DirtyBlocks();  // in block order: neighbours go up together as ranges
  Feed(id);
  Progress();
}

void SyncBarrier::StartAbove(uint64_t op) {
  const uint64_t id = New(kLocal, 0, op, false);
  Feed(id);
  Progress();
}

void SyncBarrier::StartDrop(uint64_t op) {
  const uint64_t id = New(kLocal, 0, op, true);
  // Every block held here goes back, dirty or not (a proxy's too: its
  // children's grants are untouched, so it keeps what they need).
  barriers_[id].todo = host_->HeldBlocks();
  Feed(id);
  Progress();
}

void SyncBarrier::Feed(uint64_t id) {
  auto it = barriers_.find(id);
  if (it == barriers_.end()) return;
  const size_t window = std::max<size_t>(1, host_->WindowBlocks());
  if (it->second.running > window / 2) return;
  while (true) {
    // Looked up each time: a block done at once (nothing to flush, or a
    // failure) calls back into OnBlockDone, and the barrier may even have
    // finished and gone (the host's flush runs the engine's end-of-event
    // work, Progress included).
    auto found = barriers_.find(id);
    if (found == barriers_.end()) return;
    Barrier& b = found->second;
    if (b.running >= window || b.next >= b.todo.size()) break;
    const uint64_t block = b.todo[b.next++];
    const uint64_t op = host_->NewLocalOp();
    block_ops_[op] = id;
    ++b.running;
    if (b.drop) host_->DropBlock(op, block);
    else host_->FlushBlock(op, block);
  }
  Barrier& b = barriers_.at(id);  // (the loop ended on it: still here)
  if (b.next >= b.todo.size()) b.todo = {};  // all started: the list is not needed any more
  if (!Pending(b)) ready_.push_back(id);
}

bool SyncBarrier::OnBlockDone(uint64_t op, const Status& st) {
  auto it = block_ops_.find(op);
  if (it == block_ops_.end()) return false;
  const uint64_t id = it->second;
  block_ops_.erase(it);
  auto b = barriers_.find(id);
  if (b == barriers_.end()) return true;
  Barrier& bar = b->second;
  --bar.running;
  if (!st.ok() && bar.error.ok()) bar.error = st;
  // Progress is made by whoever runs next: not in the middle of the
  // completion that told us.
  if (!Pending(bar)) ready_.push_back(id);
  else if (bar.next < bar.todo.size() && bar.running == std::max<size_t>(1, host_->WindowBlocks()) / 2)
    hungry_.push_back(id);
  return true;
}

void SyncBarrier::Progress() {
  while (!hungry_.empty()) {
    const uint64_t id = hungry_.back();
    hungry_.pop_back();
    Feed(id);
  }
  while (!ready_.empty()) {
    const uint64_t id = ready_.back();
    ready_.pop_back();
    if (barriers_.count(id)) Advance(id);
  }
}

void SyncBarrier::Advance(uint64_t id) {
  Barrier& b = barriers_.at(id);
  if (Pending(b) || b.sent_up || b.flushing_root) return;
  if (!b.error.ok() || b.drop) return Finish(id, b.error);
  if (host_->IsRoot()) {
    b.flushing_root = true;
    return host_->FlushRoot(id);
  }
  if (!host_->CanAskParent() || host_->ClaimsPending()) {
    b.retry_at = host_->Now() + std::chrono::milliseconds(200);
    return;
  }
  b.sent_up = true;
  host_->SendUp(id);
}

void SyncBarrier::RootFlushed(uint64_t id, const Status& st) {
  if (!barriers_.count(id)) return;
  barriers_.at(id).flushing_root = false;
  Finish(id, st);
}

void SyncBarrier::OnReply(uint64_t id, const Status& st, const Message& reply) {
  auto it = barriers_.find(id);
  if (it == barriers_.end()) return;
  if (!st.ok()) {  // lost with the link: again, to whatever parent there is then
    it->second.sent_up = false;
    it->second.retry_at = host_->Now() + std::chrono::milliseconds(200);
    return;
  }
  Finish(id, reply.opcode == Opcode::kOkReply ? Status::Ok()
                                               : Status::IOError("sync barrier failed at the parent: " + Describe(reply)));
}

void SyncBarrier::Tick() {
  for (auto& [id, b] : barriers_)
    if (b.retry_at != Time{} && host_->Now() >= b.retry_at && !b.sent_up && !Pending(b) && !b.flushing_root) {
      b.retry_at = Time{};
      ready_.push_back(id);
    }
  Progress();
}

void SyncBarrier::Finish(uint64_t id, Status st) {
  Barrier b = std::move(barriers_.at(id));
  barriers_.erase(id);
  if (st.ok() && b.from == kLocal && !b.drop && writes_lost_) {  // lost while the barrier ran
    writes_lost_ = false;
    st = Status::IOError(kLostWrites);
  }
  // The barrier reached the root: what we forwarded is there now.
  if (st.ok() && !b.drop) host_->ForgetForwarded(b.forwarded);
  if (b.from == kLocal) {
    host_->CompleteLocal(b.local_op, st);
  } else if (st.ok()) {
    host_->AnswerChild(b.from, b.reply_xid);
  } else {
    host_->RefuseChild(b.from, b.reply_xid, WireStatus::kBusy);
  }
}

}  // namespace vshare
