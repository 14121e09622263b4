// Volume: one volume on a node, with byte-addressed I/O for the local
// interface. The same on every node, whatever its role:
//
//   Volume  ->  BlockTable (the fast path)  ->  ControlPath (the engine)
//                                               -> the store, or the parent
//
// Read and Write split a byte range into blocks. A block this node may
// read or write now (its permission held, under a valid lease, no child in
// the way) is served on the caller's thread straight from the table, with
// no allocation and no hop to another thread. The rest of the range goes to
// the engine in one call, which asks the parent (or the root's store) for
// whole ranges at a time. A sequential reader also starts read-ahead: a
// window beyond what it asked for, growing while it stays sequential.
//
// End of the volume: a read stops there (0 bytes at or past it); a write
// that starts at or past it fails with kOutOfRange, and one that crosses
// it is cut short. A call either moves every byte it reports or fails.
//
// Write modes (--write-mode): async completes once applied here; semi-sync
// once the parent holds the bytes too; sync once the root has them durably.
//
// Thread safety: all methods may be called from many threads at once.
#pragma once

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>

#include "core/block_table.h"
#include "core/control_path.h"
#include "core/volume_io.h"

namespace vshare {

class Volume final : public VolumeIo {
 public:
  enum class WriteMode { kAsync, kSemiSync, kSync };

  // `table` and `control` outlive the volume.
  Volume(std::string name, BlockTable* table, ControlPath* control);

  const std::string& name() const override { return name_; }
  uint64_t size() const override { return table_->volume_size(); }
  uint32_t block_size() const override { return table_->block_size(); }
  CacheGeometry cache_geometry() const override { return table_->geometry(); }
  bool read_only() const override { return false; }

  Status Read(uint64_t offset, std::span<std::byte> out, size_t* done) override;
  Status Write(uint64_t offset, std::span<const std::byte> in, size_t* done) override;
  Status Flush() override;
  Status DropCache() override;
  Status OpenForWrite() override;
  void CloseForWrite() override;
  VolumeStats stats() const override;
  void ResetStats() override;

  void set_write_mode(WriteMode m) { write_mode_ = m; }
  // --shared-writers: write-opens take the lease shared.
  void set_shared_writers(bool on) { shared_writers_ = on; }
  // How long a write-open keeps asking while another node holds the lease
  // (the kernel closes files asynchronously: a holder that just closed may
  // not have given it back yet).
  void set_lease_wait(std::chrono::milliseconds d) { lease_wait_ = d; }
  // The largest read-ahead window (0: none), at most a quarter of the
  // cache: a window the cache cannot hold would evict what it read ahead
  // before the reader got there.
  void set_readahead_max(uint64_t bytes);
  uint64_t readahead_max() const { return readahead_max_; }
  // --kernel-cache: a read with misses reads its hits again at the end.
  void set_kernel_cache(bool on) { kernel_cache_ = on; }

 private:
  // Tells the engine to read ahead of a read of [offset, end).
  void ReadAhead(uint64_t offset, uint64_t end);
  void Record(bool is_read, std::chrono::steady_clock::time_point start, uint64_t bytes, const Status& st);

  const std::string name_;
  BlockTable* table_;
  ControlPath* control_;
  WriteMode write_mode_ = WriteMode::kAsync;
  bool shared_writers_ = false;
  std::chrono::milliseconds lease_wait_{2000};
  uint64_t readahead_max_ = 8u << 20;
  bool kernel_cache_ = false;

  std::mutex ra_mu_;
  uint64_t ra_end_ = 0;     // guarded by ra_mu_: where the sequential stream is
  uint64_t ra_window_ = 0;  // guarded by ra_mu_: bytes read ahead of it (0: not sequential)
  uint64_t ra_upto_ = 0;    // guarded by ra_mu_: read ahead up to here (bytes)

  std::atomic<uint64_t> reads_{0}, writes_{0}, bytes_read_{0}, bytes_written_{0};
  std::atomic<uint64_t> read_ns_{0}, write_ns_{0}, read_ns_max_{0}, write_ns_max_{0};
  std::atomic<uint64_t> flushes_{0}, errors_{0};
};

}  // namespace vshare
