#include "core/block_data.h"

#include <algorithm>
#include <cstring>

namespace vshare {

bool MapBlockData::Get(uint64_t block, std::vector<uint8_t>* out) {
  auto it = copies_.find(block);
  if (it == copies_.end()) return false;
  *out = it->second.bytes;
  return true;
}

void MapBlockData::Put(uint64_t block, std::span<const uint8_t> data, bool dirty) {
  Copy& c = copies_[block];
  c.bytes.assign(data.begin(), data.end());
  c.dirty = dirty;
}

bool MapBlockData::IsDirty(uint64_t block) {
  auto it = copies_.find(block);
  return it != copies_.end() && it->second.dirty;
}

void MapBlockData::MarkClean(uint64_t block) {
  auto it = copies_.find(block);
  if (it != copies_.end()) it->second.dirty = false;
}

bool StoreBlockData::Get(uint64_t block, std::vector<uint8_t>* out) {
  std::vector<std::byte> buf(store_->block_size());
  Status st = store_->ReadBlock(block, buf);
  if (!st.ok()) {
    if (error_.ok()) error_ = st;
    return false;
  }
  out->resize(buf.size());
  std::memcpy(out->data(), buf.data(), buf.size());
  return true;
}

void StoreBlockData::Put(uint64_t block, std::span<const uint8_t> data, bool) {
  std::vector<std::byte> buf(store_->block_size());
  std::memcpy(buf.data(), data.data(), std::min(buf.size(), data.size()));
  Status st = store_->WriteBlock(block, buf);
  if (!st.ok() && error_.ok()) error_ = st;
}

Status StoreBlockData::TakeError() {
  Status st = error_;
  error_ = Status::Ok();
  return st;
}

}  // namespace vshare
