// BlockStore: the authoritative copy of a volume, addressed in whole blocks.
//
// The root of a tree reads and writes its volume through a BlockStore; caches
// and the coherence logic sit above it and never below. Implementations:
// FileStore (an image file or block device), MemStore (tests). Wrappers that
// add behaviour (fault injection, encryption) implement the same interface.
//
// Stores stack: a wrapper (FaultStore, later encryption or a cache level)
// implements this interface over another BlockStore.
//
// Blocks are numbered from 0. Every block is block_size() bytes, except that
// the last one may be cut short by the volume's size: reads of the part past
// size() return zeros and writes to it are dropped, so callers can always
// move whole blocks. Implementations are safe to call from many threads at
// once for different blocks; callers serialise access to the same block.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "core/status.h"

namespace vshare {

class BlockStore {
 public:
  virtual ~BlockStore() = default;

  virtual uint64_t size() const = 0;        // volume size in bytes
  virtual uint32_t block_size() const = 0;  // a power of two
  uint64_t block_count() const { return (size() + block_size() - 1) / block_size(); }

  // Capabilities, kept apart from operations.
  virtual bool can_write() const = 0;

  // Reads block `block` into `out` (exactly block_size() bytes).
  virtual Status ReadBlock(uint64_t block, std::span<std::byte> out) = 0;
  // Writes `in` (exactly block_size() bytes) to block `block`. Not durable
  // until Sync() returns ok.
  virtual Status WriteBlock(uint64_t block, std::span<const std::byte> in) = 0;
  // Makes every completed WriteBlock durable.
  virtual Status Sync() = 0;

  // Reads consecutive blocks from `first`, one buffer of block_size() bytes
  // each; a store may do it in one system call. By default, one by one.
  virtual Status ReadBlocks(uint64_t first, std::span<const std::span<std::byte>> outs) {
    for (size_t i = 0; i < outs.size(); ++i)
      if (Status st = ReadBlock(first + i, outs[i]); !st.ok()) return st;
    return Status::Ok();
  }
  // Writes in.size() / block_size() consecutive whole blocks from `first`.
  virtual Status WriteBlocks(uint64_t first, std::span<const std::byte> in) {
    const size_t bs = block_size();
    for (size_t i = 0; i * bs < in.size(); ++i)
      if (Status st = WriteBlock(first + i, in.subspan(i * bs, bs)); !st.ok()) return st;
    return Status::Ok();
  }
};

}  // namespace vshare
