// VolumeIo: what the local interface (FUSE, the control file, stats) needs
// from a volume. core/volume.h is the one implementation; tests may have
// their own.
//
// Read and Write take any offset and length; see Volume for the exact
// end-of-volume rules. All methods are thread-safe.
#pragma once

#include <span>
#include <string>

#include "core/block_table.h"
#include "core/status.h"

namespace vshare {

struct VolumeStats {
  uint64_t reads = 0;          // Read() calls
  uint64_t writes = 0;         // Write() calls
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;
  uint64_t read_ns_total = 0;  // summed latency of Read() calls
  uint64_t write_ns_total = 0;
  uint64_t read_ns_max = 0;
  uint64_t write_ns_max = 0;
  uint64_t flushes = 0;        // Flush() calls that completed
  uint64_t store_reads = 0;    // blocks read from the store (the root)
  uint64_t store_writes = 0;   // blocks written back to the store (the root)
  uint64_t errors = 0;         // calls that returned an error
  CacheCounters cache;
};

class VolumeIo {
 public:
  virtual ~VolumeIo() = default;
  virtual const std::string& name() const = 0;
  virtual uint64_t size() const = 0;
  virtual uint32_t block_size() const = 0;
  virtual bool read_only() const = 0;
  // The local block cache's shape; sets == 0 when there is none.
  virtual CacheGeometry cache_geometry() const = 0;

  virtual Status Read(uint64_t offset, std::span<std::byte> out, size_t* done) = 0;
  virtual Status Write(uint64_t offset, std::span<const std::byte> in, size_t* done) = 0;
  // Everything written here before the call reaches the root's store, durably.
  virtual Status Flush() = 0;
  virtual Status DropCache() = 0;

  // The writer lease, taken when the image is opened for writing and given
  // back when that file is closed. A volume that no other host can write
  // (a root without children) needs none.
  virtual Status OpenForWrite() { return Status::Ok(); }
  virtual void CloseForWrite() {}

  virtual VolumeStats stats() const = 0;
  virtual void ResetStats() = 0;
};

}  // namespace vshare
