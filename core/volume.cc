#include "core/volume.h"

#include <algorithm>
#include <cstring>

namespace vshare {

namespace {

void StoreMax(std::atomic<uint64_t>& target, uint64_t v) {
  uint64_t cur = target.load(std::memory_order_relaxed);
  while (v > cur && !target.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
  }
}

}  // namespace

Volume::Volume(std::string name, std::unique_ptr<BlockStore> store, const CacheGeometry& geometry)
    : name_(std::move(name)),
      store_(std::move(store)),
      cache_(geometry),
      // This node is the root: its store is the authoritative copy, so it
      // holds WRITE on every block.
      table_(Perm::kWrite) {}

Status Volume::Permit(uint64_t block, Perm want) {
  if (table_.GrantLocalFast(block, want)) return Status::Ok();
  std::vector<Action> actions = table_.Apply(block, Event{Event::Kind::kRequest, kLocal, want});
  if (actions.size() == 1 && actions[0].kind == Action::Kind::kGrant) return Status::Ok();
  // Only a root without children exists so far; anything else here means a
  // grant we cannot honour locally.
  return Status::Busy("block " + std::to_string(block) + " of " + name_ + " is not available here (" +
                      ToString(actions.front()) + ")");
}

Status Volume::WriteBack(BlockCache::LockedSet& set, BlockCache::Slot* slot) {
  Status st = store_->WriteBlock(slot->block, slot->bytes(block_size()));
  if (!st.ok()) return st;
  ++store_writes_;
  set.MarkClean(slot);
  return Status::Ok();
}

Status Volume::Fill(BlockCache::LockedSet& set, uint64_t block, bool load, BlockCache::Slot** out) {
  BlockCache::Slot* slot = set.ChooseVictim();
  if (slot->dirty) {
    // The victim's data exists nowhere else: it must reach the store before
    // the slot is reused. If that fails the victim stays, and so does its data.
    Status st = WriteBack(set, slot);
    if (!st.ok()) return st;
  }
  set.Install(slot, block);
  if (load) {
    Status st = store_->ReadBlock(block, slot->bytes(block_size()));
    if (!st.ok()) {
      set.Drop(slot);
      return st;
    }
    ++store_reads_;
  }
  *out = slot;
  return Status::Ok();
}

void Volume::Record(bool is_read, std::chrono::steady_clock::time_point start, uint64_t bytes,
                    const Status& st) {
  auto ns = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count());
  if (is_read) {
    ++reads_;
    bytes_read_ += bytes;
    read_ns_ += ns;
    StoreMax(read_ns_max_, ns);
  } else {
    ++writes_;
    bytes_written_ += bytes;
    write_ns_ += ns;
    StoreMax(write_ns_max_, ns);
  }
  if (!st.ok()) ++errors_;
}

Status Volume::Read(uint64_t offset, std::span<std::byte> out, size_t* done) {
  const auto start = std::chrono::steady_clock::now();
  *done = 0;
  const uint64_t end = offset >= size() ? offset : std::min<uint64_t>(size(), offset + out.size());
  const uint32_t bs = block_size();
  Status st;
  for (uint64_t pos = offset; pos < end && st.ok();) {
    const uint64_t block = pos / bs;
    const size_t in_block = static_cast<size_t>(pos % bs);
    const size_t n = static_cast<size_t>(std::min<uint64_t>(bs - in_block, end - pos));
    st = Permit(block, Perm::kRead);
    if (!st.ok()) break;
    auto set = cache_.LockFor(block);
    BlockCache::Slot* slot = set.Lookup(block);
    if (!slot) st = Fill(set, block, /*load=*/true, &slot);
    if (!st.ok()) break;
    std::memcpy(out.data() + (pos - offset), slot->data + in_block, n);
    pos += n;
    *done += n;
  }
  // Bytes already read stay valid: report them, and the error only if none.
  if (*done > 0) st = Status::Ok();
  Record(true, start, *done, st);
  return st;
}

Status Volume::Write(uint64_t offset, std::span<const std::byte> in, size_t* done) {
  const auto start = std::chrono::steady_clock::now();
  *done = 0;
  Status st;
  if (read_only()) {
    st = Status::PermissionDenied("volume " + name_ + " is read-only");
  } else if (in.empty()) {
    st = Status::Ok();
  } else if (offset >= size()) {
    st = Status::OutOfRange("write at " + std::to_string(offset) + " is past the end of " + name_ +
                            " (" + std::to_string(size()) + " bytes)");
  }
  const uint64_t end = std::min<uint64_t>(size(), offset + in.size());
  const uint32_t bs = block_size();
  for (uint64_t pos = offset; st.ok() && pos < end;) {
    const uint64_t block = pos / bs;
    const size_t in_block = static_cast<size_t>(pos % bs);
    const size_t n = static_cast<size_t>(std::min<uint64_t>(bs - in_block, end - pos));
    st = Permit(block, Perm::kWrite);
    if (!st.ok()) break;
    auto set = cache_.LockFor(block);
    BlockCache::Slot* slot = set.Lookup(block);
    // The tail block of a volume whose size is not a multiple of the block
    // size counts as whole when the write reaches the volume's end.
    const bool whole = in_block == 0 && (n == bs || pos + n == size());
    if (!slot) st = Fill(set, block, /*load=*/!whole, &slot);
    if (!st.ok()) break;
    std::memcpy(slot->data + in_block, in.data() + (pos - offset), n);
    set.MarkDirty(slot);
    if (write_through_) {
      st = WriteBack(set, slot);
      if (!st.ok()) break;
    }
    if (!table_.GrantLocalFast(block, Perm::kWrite))
      table_.Apply(block, Event{Event::Kind::kWriteDone, kLocal, Perm::kWrite});
    pos += n;
    *done += n;
  }
  if (*done > 0) st = Status::Ok();
  if (st.ok() && *done > 0 && sync_writes_) {
    st = Flush();
    if (!st.ok()) *done = 0;  // not acknowledged: it is not durable
  }
  Record(false, start, *done, st);
  return st;
}

Status Volume::Flush() {
  Status first;
  for (uint32_t i = 0; i < cache_.geometry().sets; ++i) {
    auto set = cache_.LockSet(i);
    for (BlockCache::Slot& slot : set.slots()) {
      if (!slot.dirty) continue;
      Status st = WriteBack(set, &slot);
      if (!st.ok() && first.ok()) first = st;
    }
  }
  // Sync even after a failed write-back: the blocks that did reach the store
  // should be durable. The failed ones stay dirty for the next attempt.
  Status st = store_->Sync();
  if (first.ok()) first = st;
  if (first.ok()) ++flushes_;
  else ++errors_;
  return first;
}

Status Volume::DropCache() {
  Status st = Flush();
  if (!st.ok()) return st;
  for (uint32_t i = 0; i < cache_.geometry().sets; ++i) {
    auto set = cache_.LockSet(i);
    for (BlockCache::Slot& slot : set.slots())
      if (!slot.empty() && !slot.dirty) set.Drop(&slot);  // dirtied again since Flush: keep
  }
  return Status::Ok();
}

VolumeStats Volume::stats() const {
  VolumeStats s;
  s.reads = reads_;
  s.writes = writes_;
  s.bytes_read = bytes_read_;
  s.bytes_written = bytes_written_;
  s.read_ns_total = read_ns_;
  s.write_ns_total = write_ns_;
  s.read_ns_max = read_ns_max_;
  s.write_ns_max = write_ns_max_;
  s.flushes = flushes_;
  s.store_reads = store_reads_;
  s.store_writes = store_writes_;
  s.errors = errors_;
  s.cache = cache_.counters();
  return s;
}

void Volume::ResetStats() {
  for (auto* c : {&reads_, &writes_, &bytes_read_, &bytes_written_, &read_ns_, &write_ns_,
                  &read_ns_max_, &write_ns_max_, &flushes_, &store_reads_, &store_writes_, &errors_})
    c->store(0);
  cache_.ResetCounters();
}

}  // namespace vshare
