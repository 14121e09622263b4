// MemStore: a BlockStore held in memory, for tests and simulations. It counts
// the calls it receives, and can be told to fail, so tests can check what
// reached the store and what happens when it breaks.
#pragma once

#include <atomic>
#include <mutex>
#include <vector>

#include "core/block_store.h"

namespace vshare {

class MemStore final : public BlockStore {
 public:
  MemStore(uint64_t size, uint32_t block_size);

  uint64_t size() const override { return size_; }
  uint32_t block_size() const override { return block_size_; }
  bool can_write() const override { return true; }
  Status ReadBlock(uint64_t block, std::span<std::byte> out) override;
  Status WriteBlock(uint64_t block, std::span<const std::byte> in) override;
  Status Sync() override;

  // Test hooks.
  std::vector<std::byte> Contents() const;  // a copy of the whole volume
  void FailWrites(bool fail) { fail_writes_ = fail; }
  uint64_t reads() const { return reads_; }
  uint64_t writes() const { return writes_; }
  uint64_t syncs() const { return syncs_; }

 private:
  const uint64_t size_;
  const uint32_t block_size_;
  mutable std::mutex mu_;
  std::vector<std::byte> bytes_;  // guarded by mu_
  std::atomic<bool> fail_writes_{false};
  std::atomic<uint64_t> reads_{0}, writes_{0}, syncs_{0};
};

}  // namespace vshare
