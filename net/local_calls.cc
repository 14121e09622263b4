// The node's ControlPath: local operations started on the I/O thread by
// callers on other threads, each wait bounded by io_timeout. A caller that
// gives up cancels what it started: the engine drops what has not taken
// effect, and nothing is written into the caller's buffers once it has gone.
#include <cstring>

#include "core/local_ops.h"
#include "core/log.h"
#include "net/tree_node.h"

namespace vshare::net {

Status TreeNode::RunLocal(std::vector<Starter> starts, std::vector<uint8_t*> outs,
                          std::vector<std::pair<size_t, size_t>> ranges) {
  if (stopped_) return Status::IOError("node stopped");
  if (starts.empty()) return Status::Ok();
  auto b = std::make_shared<Batch>();
  b->remaining = starts.size();
  b->outs = std::move(outs);
  b->outs.resize(starts.size(), nullptr);
  b->ranges = std::move(ranges);
  b->ranges.resize(starts.size());
  b->ops.resize(starts.size());
  local_ops_ += starts.size();
  asio::post(io_, [this, b, starts = std::move(starts)] {
    // Every operation is registered before anything completes: completions
    // are only carried out by Drain.
    const Time now = Now();  // one clock read for the batch
    for (size_t i = 0; i < starts.size(); ++i) {
      b->ops[i] = starts[i](replica_, now);
      waiting_[b->ops[i]] = {b, i};
    }
    Drain();
  });
  std::unique_lock lock(b->mu);
  if (b->cv.wait_for(lock, opts_.io_timeout, [&] { return b->remaining == 0; })) return b->status;
  b->cancelled = true;
  lock.unlock();
  ++local_timeouts_;
  asio::post(io_, [this, b] {
    for (uint64_t op : b->ops) {
      if (op == 0 || !waiting_.erase(op)) continue;
      replica_.CancelLocal(op, Now());
    }
    Drain();
  });
  return Status::TimedOut("no answer within " + std::to_string(opts_.io_timeout.count()) + " ms");
}

void TreeNode::Complete(LocalDone& d) {
  auto it = waiting_.find(d.op);
  if (it == waiting_.end()) return;  // its caller gave up waiting
  auto [b, i] = it->second;
  waiting_.erase(it);
  std::lock_guard lock(b->mu);
  if (b->cancelled) return;
  if (!d.status.ok() && b->status.ok()) b->status = d.status;
  // (A read's bytes are usually in place already: the read sink put them
  // there at the grant.)
  if (d.status.ok() && b->outs[i] && !d.data.empty()) {
    const auto [off, len] = b->ranges[i];
    if (d.data.size() >= off + len) std::memcpy(b->outs[i], d.data.data() + off, len);
    else if (b->status.ok()) b->status = Status::IOError("short block from the engine");
  }
  if (--b->remaining == 0) b->cv.notify_all();
}

Status TreeNode::Run(std::span<BlockOp> ops) {
  LocalStarts l = StartsFor(ops);
  return RunLocal(std::move(l.starts), std::move(l.outs), std::move(l.ranges));
}

Status TreeNode::Forward(std::span<const uint64_t> blocks) {
  std::vector<Starter> starts;
  for (uint64_t b : blocks) starts.push_back([b](Replica& r, Time now) { return r.ForwardLocal(b, now); });
  return RunLocal(std::move(starts));
}

void TreeNode::Prefetch(uint64_t first, uint64_t count) {
  if (stopped_) return;
  asio::post(io_, [this, first, count] {
    const Time now = Now();
    for (uint64_t b = first; b < first + count; ++b) replica_.PrefetchLocal(b, now);
    Drain();
  });
}

Status TreeNode::Sync() { return RunLocal({[](Replica& r, Time now) { return r.SyncLocal(now); }}); }

Status TreeNode::DropAll() { return RunLocal({[](Replica& r, Time now) { return r.DropAllLocal(now); }}); }

Status TreeNode::AcquireWriterLease(bool shared) {
  return RunLocal({[shared](Replica& r, Time now) { return r.AcquireLeaseLocal(shared, now); }});
}

Status TreeNode::ReleaseWriterLease(bool shared) {
  return RunLocal({[shared](Replica& r, Time now) { return r.ReleaseLeaseLocal(shared, now); }});
}

}  // namespace vshare::net
