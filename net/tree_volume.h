// TreeVolume: a volume served through the tree (a TreeNode), as the local
// interface sees it. On the root it also owns the root's Volume (cache and
// image), which the Replica's data goes through; elsewhere the blocks come
// from the parent.
//
// Read and Write split a byte range into blocks and run them as one batch
// (concurrently) on the node. Writes are write-back at a child: the block
// stays dirty there, holding WRITE, until Flush (fsync, the flush command,
// unmount) sends it to the root, or someone else's access recalls it.
#pragma once

#include <atomic>
#include <memory>

#include "core/block_data.h"
#include "core/volume.h"
#include "core/volume_io.h"
#include "net/tree_node.h"

namespace vshare::net {

class TreeVolume final : public VolumeIo {
 public:
  // `backing` (root only) is the Volume `data` writes into. Start() joins.
  TreeVolume(std::string name, std::unique_ptr<Volume> backing, std::unique_ptr<BlockData> data,
             std::unique_ptr<TreeNode> node);
  ~TreeVolume() override;

  Status Start() { return node_->Start(); }
  // How a write completes (--write-mode):
  //  - async: once applied here; the block stays dirty (write-back);
  //  - semi-sync: once the parent also holds it (FORWARD);
  //  - sync: once the root has it durably (the write, then a sync barrier).
  enum class WriteMode { kAsync, kSemiSync, kSync };
  void set_write_mode(WriteMode m) { write_mode_ = m; }
  // --shared-writers: write-opens take the lease shared, so they coexist
  // with other nodes' shared ones (never with an exclusive one).
  void set_shared_writers(bool on) { shared_writers_ = on; }
  // How long a write-open keeps asking while another node holds the lease
  // (the kernel closes files asynchronously: a holder that just closed may
  // not have given it back yet).
  void set_lease_wait(std::chrono::milliseconds d) { lease_wait_ = d; }
  TreeNode& node() { return *node_; }

  const std::string& name() const override { return name_; }
  uint64_t size() const override { return node_->volume_size(); }
  uint32_t block_size() const override { return node_->block_size(); }
  bool read_only() const override { return false; }
  CacheGeometry cache_geometry() const override;

  Status Read(uint64_t offset, std::span<std::byte> out, size_t* done) override;
  Status Write(uint64_t offset, std::span<const std::byte> in, size_t* done) override;
  Status Flush() override;
  Status DropCache() override;
  Status OpenForWrite() override;
  void CloseForWrite() override;
  VolumeStats stats() const override;
  void ResetStats() override;

 private:
  void Record(bool is_read, std::chrono::steady_clock::time_point start, uint64_t bytes, const Status& st);

  const std::string name_;
  std::unique_ptr<Volume> backing_;   // declared first: destroyed last
  std::unique_ptr<BlockData> data_;
  std::unique_ptr<TreeNode> node_;    // stopped first
  std::atomic<uint64_t> reads_{0}, writes_{0}, bytes_read_{0}, bytes_written_{0};
  std::atomic<uint64_t> read_ns_{0}, write_ns_{0}, flushes_{0}, errors_{0};
  WriteMode write_mode_ = WriteMode::kAsync;
  bool shared_writers_ = false;
  std::chrono::milliseconds lease_wait_{2000};
};

}  // namespace vshare::net
