// InlineControl: a root's engine driven on the caller's thread, for tests of
// Volume and the local interface without sockets or threads of its own.
// Every call runs the engine (core/replica.h) and its store I/O (on the
// given store) to completion before it returns; one caller at a time.
#pragma once

#include <atomic>
#include <mutex>

#include "core/block_store.h"
#include "core/control_path.h"
#include "core/replica.h"

namespace vshare {

class InlineControl final : public ControlPath {
 public:
  // cfg.volume_size and cfg.block_size must be the store's.
  InlineControl(ReplicaConfig cfg, BlockStore* store);

  BlockTable* table() { return replica_.table(); }
  Replica& replica() { return replica_; }

  Status Run(std::span<BlockOp> ops) override;
  Status Forward(std::span<const uint64_t> blocks) override;
  void Prefetch(uint64_t first, uint64_t count) override;
  Status Sync() override;
  Status DropAll() override;
  Status AcquireWriterLease(bool shared) override;
  Status ReleaseWriterLease(bool shared) override;
  void AddStats(VolumeStats* s) const override;

 private:
  using Starter = std::function<uint64_t(Replica&, Time)>;
  Status RunAll(const std::vector<Starter>& starts, const std::vector<uint8_t*>& outs = {},
                const std::vector<std::pair<size_t, size_t>>& ranges = {});

  std::mutex mu_;
  Replica replica_;
  BlockStore* store_;
  std::atomic<uint64_t> store_reads_{0}, store_writes_{0};
};

}  // namespace vshare
