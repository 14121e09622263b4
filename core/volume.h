// Volume: one exported volume on a node, with byte-addressed I/O on top of
// the block table, the cache and the block store.
//
// Read and Write take any offset and length: they split the range into
// blocks, ask the block table for permission, and move bytes through the
// cache, loading blocks from the store on a miss and writing dirty blocks
// back before their slot is reused. Partial-block writes read the block first
// (unless it is cached); whole-block writes do not.
//
// Writes are write-back: they complete in the cache and reach the store on
// Flush(), on eviction, or when the node's flusher runs. Flush() returns only
// when every block dirtied before the call is in the store and synced.
//
// Thread safety: all methods may be called from many threads at once. I/O on
// different cache sets runs in parallel; I/O on one set is serialised.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <span>
#include <string>

#include "core/block_cache.h"
#include "core/block_store.h"
#include "core/block_table.h"
#include "core/status.h"
#include "core/volume_io.h"

namespace vshare {

class Volume final : public VolumeIo {
 public:
  // Takes ownership of `store`. `geometry.block_size` must equal the store's.
  Volume(std::string name, std::unique_ptr<BlockStore> store, const CacheGeometry& geometry);

  const std::string& name() const override { return name_; }
  uint64_t size() const override { return store_->size(); }
  uint32_t block_size() const override { return store_->block_size(); }
  CacheGeometry cache_geometry() const override { return cache_.geometry(); }
  bool read_only() const override { return !store_->can_write(); }

  // Reads up to out.size() bytes at `offset` into `out`; *done is the count
  // read, short only at the end of the volume (0 at or past it).
  Status Read(uint64_t offset, std::span<std::byte> out, size_t* done) override;
  // Writes `in` at `offset`; *done is the count written. A write that starts
  // at or past the end fails with kOutOfRange; one that runs past the end is
  // cut short there, like a write to a fixed-size device.
  Status Write(uint64_t offset, std::span<const std::byte> in, size_t* done) override;
  // Writes back every dirty block, then syncs the store.
  Status Flush() override;
  // Flushes, then empties the cache of clean blocks.
  Status DropCache() override;
  // Sync mode: every Write is followed by a Flush before it returns.
  void set_sync_writes(bool on) { sync_writes_ = on; }
  // Write-through: every Write reaches the store (not yet durably: Flush
  // syncs) before it returns, so another process reading the image sees it
  // (a standby root that takes over).
  void set_write_through(bool on) { write_through_ = on; }

  VolumeStats stats() const override;
  void ResetStats() override;

 private:
  // Both run with `set` locked. WriteBack stores a dirty slot and marks it
  // clean; Fill makes `block` resident (evicting the set's victim), loading
  // it from the store unless `load` is false.
  Status WriteBack(BlockCache::LockedSet& set, BlockCache::Slot* slot);
  Status Fill(BlockCache::LockedSet& set, uint64_t block, bool load, BlockCache::Slot** out);
  Status Permit(uint64_t block, Perm want);
  void Record(bool is_read, std::chrono::steady_clock::time_point start, uint64_t bytes,
              const Status& st);

  const std::string name_;
  bool sync_writes_ = false;
  bool write_through_ = false;
  std::unique_ptr<BlockStore> store_;
  BlockCache cache_;
  BlockTable table_;

  std::atomic<uint64_t> reads_{0}, writes_{0}, bytes_read_{0}, bytes_written_{0};
  std::atomic<uint64_t> read_ns_{0}, write_ns_{0}, read_ns_max_{0}, write_ns_max_{0};
  std::atomic<uint64_t> flushes_{0}, store_reads_{0}, store_writes_{0}, errors_{0};
};

}  // namespace vshare
