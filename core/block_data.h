// BlockData: where a node keeps the bytes of the blocks it holds, as seen by
// the protocol logic (Replica). A proxy keeps copies in memory (MapBlockData);
// the root reads and writes its authoritative store (StoreBlockData). Later a
// node's block cache implements it too.
#pragma once

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
};

// Copies in a hash map: for proxies without a cache yet, tests and simulations.
class MapBlockData final : public BlockData {
 public:
  bool Get(uint64_t block, std::vector<uint8_t>* out) override;
  void Put(uint64_t block, std::span<const uint8_t> data, bool dirty) override;
  bool IsDirty(uint64_t block) override;
  void MarkClean(uint64_t block) override;
  void Drop(uint64_t block) override { copies_.erase(block); }
  size_t size() const { return copies_.size(); }

 private:
  struct Copy {
    std::vector<uint8_t> bytes;
    bool dirty = false;
  };
  std::unordered_map<uint64_t, Copy> copies_;
};

// The root's authoritative store: every block is present, nothing is ever
// dirty (writes go straight to the store), and nothing is dropped.
class StoreBlockData final : public BlockData {
 public:
  explicit StoreBlockData(BlockStore* store) : store_(store) {}
  bool Get(uint64_t block, std::vector<uint8_t>* out) override;
  void Put(uint64_t block, std::span<const uint8_t> data, bool dirty) override;
  bool IsDirty(uint64_t) override { return false; }
  void MarkClean(uint64_t) override {}
  void Drop(uint64_t) override {}
  // The first store failure since the last call (Put cannot return one).
  Status TakeError();

 private:
  BlockStore* store_;
  Status error_;
};

}  // namespace vshare
