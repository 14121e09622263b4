// FaultStore: a BlockStore wrapper that fails or delays what it is told to,
// for tests. Everything else passes through to the wrapped store.
//
// Faults are set at any time from any thread: reads, writes and syncs can
// each fail with a given status (EIO, ENOSPC, ...), for every call or for
// the next N calls, and every call can be delayed. It also records how many
// writes and syncs were ever under way at once.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <thread>

#include "core/block_store.h"

namespace vshare {

class FaultStore final : public BlockStore {
 public:
  enum class Op { kRead, kWrite, kSync };

  explicit FaultStore(BlockStore* inner) : inner_(inner) {}

  // Calls of kind `op` fail with `st` (Ok: they stop failing). `times` < 0:
  // every call; otherwise the next `times` calls.
  void Fail(Op op, Status st, int times = -1) {
    std::lock_guard lock(mu_);
    Rule& r = rules_[static_cast<int>(op)];
    r.status = std::move(st);
    r.times = times;
  }
  void Delay(std::chrono::milliseconds d) { delay_ms_ = d.count(); }
  uint64_t calls(Op op) const { return calls_[static_cast<int>(op)]; }
  // The most writes and syncs that were under way at the same time.
  int most_writes_at_once() const { return most_writes_.load(); }

  uint64_t size() const override { return inner_->size(); }
  uint32_t block_size() const override { return inner_->block_size(); }
  bool can_write() const override { return inner_->can_write(); }
  Status ReadBlock(uint64_t block, std::span<std::byte> out) override {
    if (Status st = Check(Op::kRead); !st.ok()) return st;
    return inner_->ReadBlock(block, out);
  }
  Status WriteBlock(uint64_t block, std::span<const std::byte> in) override {
    return Writing(Op::kWrite, [&] { return inner_->WriteBlock(block, in); });
  }
  Status ReadBlocks(uint64_t first, std::span<const std::span<std::byte>> outs) override {
    if (Status st = Check(Op::kRead); !st.ok()) return st;
    return inner_->ReadBlocks(first, outs);
  }
  Status WriteBlocks(uint64_t first, std::span<const std::byte> in) override {
    return Writing(Op::kWrite, [&] { return inner_->WriteBlocks(first, in); });
  }
  Status Sync() override {
    return Writing(Op::kSync, [&] { return inner_->Sync(); });
  }

 private:
  struct Rule {
    Status status;
    int times = -1;
  };
  // A write or sync: counted as under way from its delay to its end.
  template <typename F>
  Status Writing(Op op, F inner) {
    const int now = ++writing_;
    for (int m = most_writes_.load(); now > m && !most_writes_.compare_exchange_weak(m, now);) {
    }
    Status st = Check(op);
    if (st.ok()) st = inner();
    --writing_;
    return st;
  }
  Status Check(Op op) {
    ++calls_[static_cast<int>(op)];
    if (const int64_t d = delay_ms_.load()) std::this_thread::sleep_for(std::chrono::milliseconds(d));
    std::lock_guard lock(mu_);
    Rule& r = rules_[static_cast<int>(op)];
    if (r.status.ok() || r.times == 0) return Status::Ok();
    if (r.times > 0) --r.times;
    return r.status;
  }

  BlockStore* inner_;
  std::mutex mu_;
  Rule rules_[3];  // guarded by mu_
  std::atomic<int64_t> delay_ms_{0};
  std::atomic<uint64_t> calls_[3] = {0, 0, 0};
  std::atomic<int> writing_{0}, most_writes_{0};
};

}  // namespace vshare
