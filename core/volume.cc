#include "core/volume.h"

#include <algorithm>
#include <thread>
#include <vector>

#include "core/log.h"

namespace vshare {

namespace {

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Up to this many blocks' operations live on the stack; a larger request
// (beyond max_write) allocates.
constexpr size_t kInlineOps = 256;

struct OpList {
  ControlPath::BlockOp inline_ops[kInlineOps];
  std::vector<ControlPath::BlockOp> more;
  size_t n = 0;
  void Add(const ControlPath::BlockOp& op) {
    if (n < kInlineOps) {
      inline_ops[n++] = op;
      return;
    }
    if (more.empty()) more.assign(inline_ops, inline_ops + kInlineOps);
    more.push_back(op);
    ++n;
  }
  std::span<ControlPath::BlockOp> span() { return more.empty() ? std::span(inline_ops, n) : std::span(more); }
};

// Copies what the fast path can serve of bytes [offset, end) into `base`;
// the rest goes into `misses`.
void ReadHits(BlockTable& table, uint64_t offset, uint64_t end, uint8_t* base, OpList* misses) {
  const uint32_t bs = table.block_size();
  const int64_t now = NowNs();
  for (uint64_t pos = offset; pos < end;) {
    const uint64_t block = pos / bs;
    const size_t in_block = static_cast<size_t>(pos % bs);
    const size_t n = static_cast<size_t>(std::min<uint64_t>(bs - in_block, end - pos));
    uint8_t* dst = base + (pos - offset);
    if (!table.ReadHit(block, in_block, {dst, n}, now))
      misses->Add({ControlPath::BlockOp::Kind::kRead, block, in_block, n, dst, nullptr});
    pos += n;
  }
}

}  // namespace

Volume::Volume(std::string name, BlockTable* table, ControlPath* control)
    : name_(std::move(name)), table_(table), control_(control) {
  set_readahead_max(readahead_max_);
}

void Volume::set_readahead_max(uint64_t bytes) {
  readahead_max_ = std::min<uint64_t>(bytes, table_->geometry().capacity_bytes() / 4);
}

void Volume::Record(bool is_read, std::chrono::steady_clock::time_point start, uint64_t bytes, const Status& st) {
  const auto ns = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count());
  (is_read ? reads_ : writes_).fetch_add(1, std::memory_order_relaxed);
  (is_read ? bytes_read_ : bytes_written_).fetch_add(bytes, std::memory_order_relaxed);
  (is_read ? read_ns_ : write_ns_).fetch_add(ns, std::memory_order_relaxed);
  auto& max = is_read ? read_ns_max_ : write_ns_max_;
  uint64_t seen = max.load(std::memory_order_relaxed);
  while (ns > seen && !max.compare_exchange_weak(seen, ns, std::memory_order_relaxed)) {
  }
  if (!st.ok()) errors_.fetch_add(1, std::memory_order_relaxed);
}

Status Volume::Read(uint64_t offset, std::span<std::byte> out, size_t* done) {
  const auto start = std::chrono::steady_clock::now();
  *done = 0;
  const uint64_t end = offset >= size() ? offset : std::min<uint64_t>(size(), offset + out.size());
  if (end == offset) {
    Record(true, start, 0, Status::Ok());
    return Status::Ok();
  }
  auto* base = reinterpret_cast<uint8_t*>(out.data());
  OpList misses;
  ReadHits(*table_, offset, end, base, &misses);
  if (readahead_max_ > 0) ReadAhead(offset, end);
  Status st;
  if (misses.n > 0) {
    table_->CountMisses(misses.n);
    st = control_->Run(misses.span());
    // --kernel-cache: the kernel kept every page of this request locked
    // while the misses were fetched, and a drop of a hit block's page may
    // have been settled meanwhile on the promise that nothing old goes
    // into it (core/kernel_pages.cc). So every block is read again now.
    if (st.ok() && kernel_cache_) {
      OpList again;
      ReadHits(*table_, offset, end, base, &again);
      if (again.n > 0) st = control_->Run(again.span());
    }
  }
  if (st.ok()) *done = end - offset;
  Record(true, start, *done, st);
  return st;
}


void Volume::ReadAhead(uint64_t offset, uint64_t end) {
  const uint32_t bs = block_size();
  uint64_t from = 0, to = 0;
  {
    // Never a wait on the fast path: a reader that finds another updating
    // the stream leaves it to that one.
    std::unique_lock lock(ra_mu_, std::try_to_lock);
    if (!lock) return;
    const uint64_t len = end - offset;
    // Sequential: it starts near where the stream is (requests in flight
    // together may arrive a little out of order).
    const uint64_t slack = std::max<uint64_t>(4 * len, 1u << 20);
    const bool sequential = offset + slack >= ra_end_ && offset <= ra_end_ + slack && (ra_end_ > 0 || offset == 0);
    if (sequential) {
      ra_window_ = ra_window_ == 0 ? std::max<uint64_t>(2 * len, 256u << 10) : ra_window_ * 2;
      ra_window_ = std::min(ra_window_, readahead_max_);
    } else {
      ra_window_ = 0;
      ra_upto_ = 0;
    }
    ra_end_ = sequential ? std::max(ra_end_, end) : end;
    if (ra_window_ == 0) return;
    // Like the kernel's own read-ahead: a new batch once the reader has
    // used up half of what is ahead, so each request upstream is large.
    if (ra_upto_ > ra_end_ && ra_upto_ - ra_end_ >= ra_window_ / 2) return;
    const uint64_t target = std::min<uint64_t>(size(), ra_end_ + ra_window_);
    from = std::max(ra_upto_, ra_end_);
    if (target <= from) return;
    to = target;
    ra_upto_ = target;
  }
  const uint64_t first = from / bs, last = (to + bs - 1) / bs;
  if (last > first) control_->Prefetch(first, last - first);
}

Status Volume::Write(uint64_t offset, std::span<const std::byte> in, size_t* done) {
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
  const int64_t now = NowNs();
  const auto* base = reinterpret_cast<const uint8_t*>(in.data());
  const bool sync = write_mode_ == WriteMode::kSync;
  OpList misses, flushes;
  for (uint64_t pos = offset; pos < end;) {
    const uint64_t block = pos / bs;
    const size_t in_block = static_cast<size_t>(pos % bs);
    const size_t n = static_cast<size_t>(std::min<uint64_t>(bs - in_block, end - pos));
    const uint8_t* src = base + (pos - offset);
    BlockTable::WriteMark mark;
    const bool hit = table_->WriteHit(block, in_block, {src, n}, now, &mark);
    if (!hit) misses.Add({ControlPath::BlockOp::Kind::kWrite, block, in_block, n, nullptr, src});
    // Sync: the block's durable flush, queued behind its write if that
    // missed (a block whose permission came goes up at once, without
    // waiting for the others or a trip back here). A whole block written
    // here hands its bytes along, so that the engine need not copy the
    // slot again.
    if (sync) {
      const bool carry = hit && n == bs;
      flushes.Add({ControlPath::BlockOp::Kind::kFlushDurable, block, 0, carry ? bs : 0, nullptr,
                   carry ? src : nullptr, carry ? mark : BlockTable::WriteMark{}});
    }
    pos += n;
  }
  Status st;
  if (misses.n > 0) table_->CountMisses(misses.n);
  for (const ControlPath::BlockOp& f : flushes.span()) misses.Add(f);
  if (misses.n > 0) st = control_->Run(misses.span());
  if (st.ok() && write_mode_ == WriteMode::kSemiSync) {
    std::vector<uint64_t> blocks;
    for (uint64_t b = offset / bs; b <= (end - 1) / bs; ++b) blocks.push_back(b);
    st = control_->Forward(blocks);
  }
  if (st.ok()) *done = end - offset;
  Record(false, start, *done, st);
  return st;
}

Status Volume::Flush() {
  // The barrier: this node's dirty blocks and whatever recalls moved into
  // its ancestors reach the root, whose store is synced.
  Status st = control_->Sync();
  if (st.ok()) flushes_.fetch_add(1, std::memory_order_relaxed);
  else errors_.fetch_add(1, std::memory_order_relaxed);
  return st;
}

Status Volume::DropCache() {
  // Below the root, giving everything back sends what is dirty up on the
  // way (and passes semi-sync bytes on); the root writes back and syncs
  // first, then forgets what no child holds.
  if (!table_->is_root()) return control_->DropAll();
  Status st = Flush();
  if (st.ok()) st = control_->DropAll();
  return st;
}

Status Volume::OpenForWrite() {
  const auto give_up = std::chrono::steady_clock::now() + lease_wait_;
  for (bool waited = false;; waited = true) {
    Status st = control_->AcquireWriterLease(shared_writers_);
    if (st.ok()) return st;
    if (st.code() != Status::Code::kBusy || std::chrono::steady_clock::now() >= give_up) {
      LogWarning("volume " + name_ + ": write-open refused: " + st.message() +
                 (st.code() == Status::Code::kBusy ? " (open it read-only here, or run every writer with --shared-writers)"
                                                   : ""));
      return st;
    }
    if (!waited)
      LogInfo("volume " + name_ + ": write-open waits up to " + std::to_string(lease_wait_.count()) +
              " ms: " + st.message());
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

void Volume::CloseForWrite() {
  Status st = control_->ReleaseWriterLease(shared_writers_);
  if (!st.ok()) LogWarning("volume " + name_ + ": giving back the writer lease: " + st.ToString());
}

VolumeStats Volume::stats() const {
  VolumeStats s;
  s.reads = reads_.load(std::memory_order_relaxed);
  s.writes = writes_.load(std::memory_order_relaxed);
  s.bytes_read = bytes_read_.load(std::memory_order_relaxed);
  s.bytes_written = bytes_written_.load(std::memory_order_relaxed);
  s.read_ns_total = read_ns_.load(std::memory_order_relaxed);
  s.write_ns_total = write_ns_.load(std::memory_order_relaxed);
  s.read_ns_max = read_ns_max_.load(std::memory_order_relaxed);
  s.write_ns_max = write_ns_max_.load(std::memory_order_relaxed);
  s.flushes = flushes_.load(std::memory_order_relaxed);
  s.errors = errors_.load(std::memory_order_relaxed);
  s.cache = table_->counters();
  control_->AddStats(&s);
  return s;
}

void Volume::ResetStats() {
  for (auto* c : {&reads_, &writes_, &bytes_read_, &bytes_written_, &read_ns_, &write_ns_, &read_ns_max_,
                  &write_ns_max_, &flushes_, &errors_})
    c->store(0, std::memory_order_relaxed);
  table_->ResetCounters();
}

}  // namespace vshare
