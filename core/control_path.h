// ControlPath: what a Volume hands to the protocol engine when the fast
// path cannot serve a block, and the volume-wide operations (sync, the
// writer lease). net/tree_node.h implements it with the engine on its own
// thread; tests may implement it directly over a Replica.
//
// Every call waits at most the node's I/O timeout and then fails with
// kTimedOut. What timed out is cancelled: it takes no effect later, and the
// caller's buffers are not touched once the call has returned.
#pragma once

#include <cstdint>
#include <span>

#include "core/block_table.h"
#include "core/status.h"
#include "core/volume_io.h"

namespace vshare {

class ControlPath {
 public:
  struct BlockOp {
    // kFlushDurable (sync writes): the block's bytes reach the root's store
    // durably; queued behind a write of the same block in the same call.
    enum class Kind { kRead, kWrite, kFlushDurable };
    Kind kind = Kind::kRead;
    uint64_t block = 0;
    size_t offset = 0;            // within the block
    size_t length = 0;
    uint8_t* out = nullptr;       // kRead: where the bytes go
    // kWrite: the bytes. kFlushDurable, optionally: the whole block as the
    // fast path just wrote it, with `mark`; the flush sends these instead
    // of copying the slot again, if the slot still bears the mark.
    const uint8_t* in = nullptr;
    BlockTable::WriteMark mark;
  };
  virtual ~ControlPath() = default;

  // Runs the operations: blocks concurrently, each block's in order. The
  // first failure is returned.
  virtual Status Run(std::span<BlockOp> ops) = 0;
  // Semi-sync: each block's bytes reach the parent as well (FORWARD).
  virtual Status Forward(std::span<const uint64_t> blocks) = 0;
  // Read-ahead: make `count` blocks from `first` readable here; no wait.
  virtual void Prefetch(uint64_t first, uint64_t count) = 0;
  // The sync barrier (fsync).
  virtual Status Sync() = 0;
  // Gives every block back (below the root) or writes back and empties the
  // cache (the root).
  virtual Status DropAll() = 0;
  // The writer lease (Replica::AcquireLeaseLocal).
  virtual Status AcquireWriterLease(bool shared) = 0;
  virtual Status ReleaseWriterLease(bool shared) = 0;
  // Counters of its own (the store's, at the root).
  virtual void AddStats(VolumeStats*) const {}
};

}  // namespace vshare
