// FileStore: a BlockStore over a regular image file or a block device.
#pragma once

#include <memory>
#include <string>

#include "core/block_store.h"

namespace vshare {

class FileStore final : public BlockStore {
 public:
  // Opens `path` read-write (read-only when `read_only`). Fails with a
  // message that names the path when it is missing, unreadable, not a
  // regular file or block device, or empty.
  static Status Open(const std::string& path, uint32_t block_size, bool read_only,
                     std::unique_ptr<FileStore>* out);
  ~FileStore() override;

  uint64_t size() const override { return size_; }
  uint32_t block_size() const override { return block_size_; }
  bool can_write() const override { return !read_only_; }
  Status ReadBlock(uint64_t block, std::span<std::byte> out) override;
  Status WriteBlock(uint64_t block, std::span<const std::byte> in) override;
  Status Sync() override;
  // One preadv / pwrite for the whole run.
  Status ReadBlocks(uint64_t first, std::span<const std::span<std::byte>> outs) override;
  Status WriteBlocks(uint64_t first, std::span<const std::byte> in) override;

  const std::string& path() const { return path_; }

 private:
  FileStore(std::string path, int fd, uint64_t size, uint32_t block_size, bool read_only);
  std::string path_;
  int fd_;
  uint64_t size_;
  uint32_t block_size_;
  bool read_only_;
};

}  // namespace vshare
