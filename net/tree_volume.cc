#include "net/tree_volume.h"

#include <algorithm>
#include <cstring>
#include <thread>

#include "core/log.h"

namespace vshare::net {

TreeVolume::TreeVolume(std::string name, std::unique_ptr<Volume> backing, std::unique_ptr<BlockData> data,
                       std::unique_ptr<TreeNode> node)
    : name_(std::move(name)), backing_(std::move(backing)), data_(std::move(data)), node_(std::move(node)) {}

TreeVolume::~TreeVolume() { node_->Stop(); }

CacheGeometry TreeVolume::cache_geometry() const {
  if (backing_) return backing_->cache_geometry();
  CacheGeometry none;
  none.block_size = block_size();
  none.sets = 0;
  none.ways = 0;
  return none;
}

void TreeVolume::Record(bool is_read, std::chrono::steady_clock::time_point start, uint64_t bytes, const Status& st) {
  auto ns = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count());
  (is_read ? reads_ : writes_)++;
  (is_read ? bytes_read_ : bytes_written_) += bytes;
  (is_read ? read_ns_ : write_ns_) += ns;
  if (!st.ok()) ++errors_;
}

Status TreeVolume::Read(uint64_t offset, std::span<std::byte> out, size_t* done) {
  const auto start = std::chrono::steady_clock::now();
  *done = 0;
  const uint64_t end = offset >= size() ? offset : std::min<uint64_t>(size(), offset + out.size());
  const uint32_t bs = block_size();
  std::vector<TreeNode::BlockOp> ops;
  for (uint64_t b = offset / bs; offset < end && b <= (end - 1) / bs; ++b) ops.push_back({b, false, 0, {}});
  Status st = node_->RunBatch(&ops);
  if (st.ok()) {
    for (const TreeNode::BlockOp& op : ops) {
      const uint64_t lo = std::max(offset, op.block * bs), hi = std::min(end, (op.block + 1) * bs);
      if (op.data.size() != bs) {
        st = Status::IOError("short block from the tree");
        break;
      }
      std::memcpy(out.data() + (lo - offset), op.data.data() + (lo - op.block * bs), hi - lo);
    }
    if (st.ok()) *done = end - offset;
  }
  Record(true, start, *done, st);
  return st;
}

Status TreeVolume::Write(uint64_t offset, std::span<const std::byte> in, size_t* done) {
  const auto start = std::chrono::steady_clock::now();
  *done = 0;
  if (in.empty()) return Status::Ok();
  if (offset >= size()) {
    Status st = Status::OutOfRange("write at " + std::to_string(offset) + " is past the end of " + name_);
    Record(false, start, 0, st);
    return st;
  }
  const uint64_t end = std::min<uint64_t>(size(), offset + in.size());
  const uint32_t bs = block_size();
  std::vector<TreeNode::BlockOp> ops;
  for (uint64_t pos = offset; pos < end;) {
    const uint64_t b = pos / bs;
    const size_t in_block = static_cast<size_t>(pos % bs);
    const size_t n = static_cast<size_t>(std::min<uint64_t>(bs - in_block, end - pos));
    const auto* p = reinterpret_cast<const uint8_t*>(in.data()) + (pos - offset);
    ops.push_back({b, true, in_block, std::vector<uint8_t>(p, p + n)});
    pos += n;
  }
  Status st = node_->RunBatch(&ops, write_mode_ == WriteMode::kSemiSync);
  if (st.ok() && write_mode_ == WriteMode::kSync) st = node_->Sync();
  if (st.ok()) *done = end - offset;
  Record(false, start, *done, st);
  return st;
}

Status TreeVolume::Flush() {
  // The barrier: this node's dirty blocks and whatever recalls moved into
  // its ancestors reach the root, whose own store is synced (on the root,
  // its Volume's Flush is the Replica's root_sync).
  Status st = node_->Sync();
  if (st.ok()) ++flushes_;
  else ++errors_;
  return st;
}

Status TreeVolume::DropCache() {
  // The root: the barrier, then its cache. A child gives every block back
  // (dirty ones to the root, semi-sync ones a level further up first).
  if (!backing_) return node_->DropAll();
  Status st = Flush();
  if (st.ok()) st = backing_->DropCache();
  return st;
}

Status TreeVolume::OpenForWrite() {
  const auto give_up = std::chrono::steady_clock::now() + lease_wait_;
  for (bool waited = false;; waited = true) {
    Status st = node_->AcquireLease(shared_writers_);
    if (st.ok()) return st;
    if (st.code() != Status::Code::kBusy || std::chrono::steady_clock::now() >= give_up) {
      LogWarning("volume " + name_ + ": write-open refused: " + st.message() +
                 (st.code() == Status::Code::kBusy
                      ? " (open it read-only here, or run every writer with --shared-writers)"
                      : ""));
      return st;
    }
    if (!waited)
      LogInfo("volume " + name_ + ": write-open waits up to " + std::to_string(lease_wait_.count()) +
              " ms: " + st.message());
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

void TreeVolume::CloseForWrite() {
  Status st = node_->ReleaseLease(shared_writers_);
  if (!st.ok()) LogWarning("volume " + name_ + ": giving back the writer lease: " + st.ToString());
}

VolumeStats TreeVolume::stats() const {
  VolumeStats s;
  if (backing_) s = backing_->stats();  // the cache and store counters
  s.reads = reads_;
  s.writes = writes_;
  s.bytes_read = bytes_read_;
  s.bytes_written = bytes_written_;
  s.read_ns_total = read_ns_;
  s.write_ns_total = write_ns_;
  s.flushes = flushes_;
  s.errors = errors_;
  if (!backing_) s.cache.dirty_blocks = data_->DirtyCount();
  return s;
}

void TreeVolume::ResetStats() {
  if (backing_) backing_->ResetStats();
  for (auto* c : {&reads_, &writes_, &bytes_read_, &bytes_written_, &read_ns_, &write_ns_, &flushes_, &errors_}) c->store(0);
}

}  // namespace vshare::net
