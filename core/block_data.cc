#include "core/block_data.h"

#include <algorithm>
#include <cstring>

#include "core/log.h"
#include "core/volume.h"

namespace vshare {

bool MapBlockData::Get(uint64_t block, std::vector<uint8_t>* out) {
  auto it = copies_.find(block);
  if (it == copies_.end()) return false;
  *out = it->second.bytes;
  return true;
}

void MapBlockData::SetDirty(Copy& c, bool dirty) {
  if (c.dirty == dirty) return;
  c.dirty = dirty;
  if (dirty) ++dirty_;
  else --dirty_;
}

void MapBlockData::Put(uint64_t block, std::span<const uint8_t> data, bool dirty) {
  Copy& c = copies_[block];
  c.bytes.assign(data.begin(), data.end());
  SetDirty(c, dirty);
}

void MapBlockData::Drop(uint64_t block) {
  auto it = copies_.find(block);
  if (it == copies_.end()) return;
  SetDirty(it->second, false);
  copies_.erase(it);
}

bool MapBlockData::IsDirty(uint64_t block) {
  auto it = copies_.find(block);
  return it != copies_.end() && it->second.dirty;
}

void MapBlockData::MarkClean(uint64_t block) {
  auto it = copies_.find(block);
  if (it != copies_.end()) SetDirty(it->second, false);
}

std::vector<uint64_t> MapBlockData::DirtyBlocks() const {
  std::vector<uint64_t> out;
  for (const auto& [block, copy] : copies_)
    if (copy.dirty) out.push_back(block);
  return out;
}

bool VolumeBlockData::Get(uint64_t block, std::vector<uint8_t>* out) {
  const uint32_t bs = volume_->block_size();
  out->assign(bs, 0);
  size_t done = 0;
  Status st = volume_->Read(block * bs, std::span(reinterpret_cast<std::byte*>(out->data()), bs), &done);
  if (!st.ok()) LogError("volume " + volume_->name() + ": read of block " + std::to_string(block) + ": " + st.ToString());
  return st.ok();  // a short read at the end leaves zeros, as a store does
}

void VolumeBlockData::Put(uint64_t block, std::span<const uint8_t> data, bool) {
  const uint32_t bs = volume_->block_size();
  size_t done = 0;
  Status st = volume_->Write(block * bs, std::as_bytes(data.subspan(0, std::min<size_t>(data.size(), bs))), &done);
  if (!st.ok()) LogError("volume " + volume_->name() + ": write of block " + std::to_string(block) + ": " + st.ToString());
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
