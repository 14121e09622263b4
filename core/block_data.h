// BlockData: where a node keeps the bytes of the blocks it holds, as seen by
// the protocol logic (Replica). A proxy keeps copies in memory (MapBlockData);
// the root reads and writes its authoritative store (StoreBlockData). Later a
// node's block cache implements it too.
#pragma once

#include <atomic>
#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "core/block_store.h"

namespace vshare {

class BlockData {
 public:
  virtual ~BlockData() = default;
  // Copies the block into *out; false when this node has no copy.
  virtual bool Get(uint64_t block, std::vector<uint8_t>* out) = 0;
  // Keeps `data` as the block's copy; `dirty` means newer than the parent's.
  virtual void Put(uint64_t block, std::span<const uint8_t> data, bool dirty) = 0;
  virtual bool IsDirty(uint64_t block) = 0;
  virtual void MarkClean(uint64_t block) = 0;
  // Forgets the copy. Callers send dirty data up first.
  virtual void Drop(uint64_t block) = 0;
  // The blocks held dirty here.
  virtual std::vector<uint64_t> DirtyBlocks() const = 0;
  // How many there are; unlike the rest, safe to call from any thread.
  virtual size_t DirtyCount() const = 0;
};

// Copies in a hash map: for proxies without a cache yet, tests and simulations.
class MapBlockData final : public BlockData {
 public:
  bool Get(uint64_t block, std::vector<uint8_t>* out) override;
  void Put(uint64_t block, std::span<const uint8_t> data, bool dirty) override;
  bool IsDirty(uint64_t block) override;
  void MarkClean(uint64_t block) override;
  void Drop(uint64_t block) override;
  std::vector<uint64_t> DirtyBlocks() const override;
  size_t DirtyCount() const override { return dirty_; }
  size_t size() const { return copies_.size(); }

 private:
  struct Copy {
    std::vector<uint8_t> bytes;
    bool dirty = false;
  };
  void SetDirty(Copy& c, bool dirty);
  std::unordered_map<uint64_t, Copy> copies_;
  std::atomic<size_t> dirty_{0};
};

// The root's data: every block is present and nothing is ever dirty in the
// protocol's sense (the root is where dirty data goes), so nothing is
// dropped or flushed upward either.
class RootBlockData : public BlockData {
 public:
  bool IsDirty(uint64_t) override { return false; }
  void MarkClean(uint64_t) override {}
  void Drop(uint64_t) override {}
  std::vector<uint64_t> DirtyBlocks() const override { return {}; }
  size_t DirtyCount() const override { return 0; }
};

// The root's authoritative store, written straight through.
class StoreBlockData final : public RootBlockData {
 public:
  explicit StoreBlockData(BlockStore* store) : store_(store) {}
  bool Get(uint64_t block, std::vector<uint8_t>* out) override;
  void Put(uint64_t block, std::span<const uint8_t> data, bool dirty) override;
  // The first store failure since the last call (Put cannot return one).
  Status TakeError();

 private:
  BlockStore* store_;
  Status error_;
};

// The root's volume behind its block cache (core/volume.h): reads and
// writes go through the cache, which writes back to the image.
class Volume;
class VolumeBlockData final : public RootBlockData {
 public:
  explicit VolumeBlockData(Volume* volume) : volume_(volume) {}
  bool Get(uint64_t block, std::vector<uint8_t>* out) override;
  void Put(uint64_t block, std::span<const uint8_t> data, bool dirty) override;

 private:
  Volume* volume_;
};

}  // namespace vshare
