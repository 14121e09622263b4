#include "test/sim/inline_control.h"

#include <cstring>
#include <map>

#include "core/local_ops.h"
#include "core/store_io.h"

namespace vshare {

namespace {
ReplicaConfig AsRoot(ReplicaConfig cfg) {
  cfg.is_root = true;
  return cfg;
}
Time Now() { return std::chrono::steady_clock::now(); }
}  // namespace

InlineControl::InlineControl(ReplicaConfig cfg, BlockStore* store) : replica_(AsRoot(std::move(cfg))), store_(store) {}

Status InlineControl::RunAll(const std::vector<Starter>& starts, const std::vector<uint8_t*>& outs,
                             const std::vector<std::pair<size_t, size_t>>& ranges) {
  std::map<uint64_t, size_t> waiting;
  for (size_t i = 0; i < starts.size(); ++i) waiting[starts[i](replica_, Now())] = i;
  Status first;
  for (int rounds = 0; !waiting.empty(); ++rounds) {
    Effects e = replica_.TakeEffects();
    for (LocalDone& d : e.done) {
      auto it = waiting.find(d.op);
      if (it == waiting.end()) continue;
      const size_t i = it->second;
      waiting.erase(it);
      if (!d.status.ok() && first.ok()) first = d.status;
      if (d.status.ok() && i < outs.size() && outs[i])
        std::memcpy(outs[i], d.data.data() + ranges[i].first, ranges[i].second);
    }
    std::vector<std::pair<uint64_t, Status>> stored;
    for (const StoreOp& op : e.store) {
      if (op.kind == StoreOp::Kind::kRead) store_reads_ += op.count;
      if (op.kind == StoreOp::Kind::kWrite) store_writes_ += op.count;
      stored.push_back({op.id, RunStoreOp(op, replica_.table(), store_)});
    }
    for (const auto& [id, st] : stored) replica_.OnStoreDone(id, st, Now());
    for (const PageDrop& d : e.page_drops)  // no kernel here: done at once
      if (d.token) {
        if (d.table) d.table->Fence(d.first);
        replica_.PagesDropped(d.token, Now());
      }
    if (e.empty() && !waiting.empty()) return Status::IOError("internal error: the engine stopped short");
    if (rounds > 1000000) return Status::IOError("internal error: the engine does not finish");
  }
  return first;
}

Status InlineControl::Run(std::span<BlockOp> ops) {
  std::lock_guard lock(mu_);
  LocalStarts l = StartsFor(ops);
  return RunAll(l.starts, l.outs, l.ranges);
}

Status InlineControl::Forward(std::span<const uint64_t>) { return Status::Ok(); }  // a root has no parent

void InlineControl::Prefetch(uint64_t first, uint64_t count) {
  std::lock_guard lock(mu_);
  for (uint64_t b = first; b < first + count; ++b) replica_.PrefetchLocal(b, Now());
  RunAll({});
}

Status InlineControl::Sync() {
  std::lock_guard lock(mu_);
  return RunAll({[](Replica& r, Time now) { return r.SyncLocal(now); }});
}

Status InlineControl::DropAll() {
  std::lock_guard lock(mu_);
  return RunAll({[](Replica& r, Time now) { return r.DropAllLocal(now); }});
}

Status InlineControl::AcquireWriterLease(bool shared) {
  std::lock_guard lock(mu_);
  return RunAll({[shared](Replica& r, Time now) { return r.AcquireLeaseLocal(shared, now); }});
}

Status InlineControl::ReleaseWriterLease(bool shared) {
  std::lock_guard lock(mu_);
  return RunAll({[shared](Replica& r, Time now) { return r.ReleaseLeaseLocal(shared, now); }});
}

void InlineControl::AddStats(VolumeStats* s) const {
  s->store_reads += store_reads_;
  s->store_writes += store_writes_;
}

}  // namespace vshare
