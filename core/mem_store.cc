#include "core/mem_store.h"

#include <algorithm>
#include <cstring>

namespace vshare {

MemStore::MemStore(uint64_t size, uint32_t block_size)
    : size_(size), block_size_(block_size), bytes_(size) {}

Status MemStore::ReadBlock(uint64_t block, std::span<std::byte> out) {
  if (out.size() != block_size_) return Status::InvalidArgument("ReadBlock: buffer is not one block");
  uint64_t off = block * block_size_;
  if (off >= size_) return Status::OutOfRange("block past the end");
  size_t n = static_cast<size_t>(std::min<uint64_t>(block_size_, size_ - off));
  std::lock_guard lock(mu_);
  std::memcpy(out.data(), bytes_.data() + off, n);
  std::memset(out.data() + n, 0, out.size() - n);
  ++reads_;
  return Status::Ok();
}

Status MemStore::WriteBlock(uint64_t block, std::span<const std::byte> in) {
  if (in.size() != block_size_) return Status::InvalidArgument("WriteBlock: buffer is not one block");
  if (fail_writes_) return Status::IOError("injected write failure");
  uint64_t off = block * block_size_;
  if (off >= size_) return Status::OutOfRange("block past the end");
  size_t n = static_cast<size_t>(std::min<uint64_t>(block_size_, size_ - off));
  std::lock_guard lock(mu_);
  std::memcpy(bytes_.data() + off, in.data(), n);
  ++writes_;
  return Status::Ok();
}

Status MemStore::Sync() {
  ++syncs_;
  return Status::Ok();
}

std::vector<std::byte> MemStore::Contents() const {
  std::lock_guard lock(mu_);
  return bytes_;
}

}  // namespace vshare
