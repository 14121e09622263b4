// Bytes: an immutable slice of a shared byte buffer.
//
// Block data travels through the node by reference: a frame read from a
// socket is cut into per-block slices without copying, and a range of
// blocks built up in one buffer goes out as one slice of it. Copying a
// Bytes copies a reference, never the bytes. Comparison is by content.
//
// Thread safety: a Bytes may be read from any thread; the buffer it refers
// to is never written once a Bytes refers to it (Allocate hands out the one
// writable pointer, for filling before the first Bytes is shared).
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

namespace vshare {

class Bytes {
 public:
  Bytes() = default;
  // Takes the vector's storage; no copy.
  Bytes(std::vector<uint8_t> v)  // NOLINT(google-explicit-constructor): a vector is a Bytes
      : owner_(std::make_shared<std::vector<uint8_t>>(std::move(v))) {
    auto* vec = static_cast<const std::vector<uint8_t>*>(owner_.get());
    p_ = vec->data();
    n_ = vec->size();
  }
  static Bytes Copy(std::span<const uint8_t> s) { return Bytes(std::vector<uint8_t>(s.begin(), s.end())); }
  // A new buffer of `n` bytes, not cleared: *writable is for filling it
  // (all of it) before the Bytes is shared with another thread. Large
  // buffers (range answers, wire copies: a MiB or more each, made and
  // freed all the time) come from a small pool of reused ones, which
  // spares malloc the work of splitting and merging big free chunks.
  static Bytes Allocate(size_t n, uint8_t** writable);
  // Bytes of large buffers waiting in the pool for reuse (at most 16 MiB).
  static size_t PooledBytes();
  // `n` zero bytes from one buffer shared by every caller (up to 16 MiB,
  // made on first use; larger ones are allocated): free to make, for
  // tables that keep no bytes (simulations).
  static Bytes Zeros(size_t n);
  // Whether this slice lies in that shared buffer.
  bool IsSharedZeros() const;

  const uint8_t* data() const { return p_; }
  size_t size() const { return n_; }
  bool empty() const { return n_ == 0; }
  const uint8_t* begin() const { return p_; }
  const uint8_t* end() const { return p_ + n_; }
  std::span<const uint8_t> span() const { return {p_, n_}; }
  std::vector<uint8_t> ToVector() const { return std::vector<uint8_t>(begin(), end()); }

  // Bytes [off, off + len) of this slice, sharing the buffer.
  Bytes Slice(size_t off, size_t len) const {
    Bytes b;
    b.owner_ = owner_;
    b.p_ = p_ + off;
    b.n_ = len;
    return b;
  }
  // True when `next` starts exactly where this slice ends, in the same
  // buffer: the two can then be joined with Extend, without copying.
  bool Adjoins(const Bytes& next) const { return owner_ && owner_ == next.owner_ && p_ + n_ == next.p_; }
  void Extend(const Bytes& next) { n_ += next.n_; }

  bool operator==(const Bytes& o) const { return n_ == o.n_ && (n_ == 0 || std::memcmp(p_, o.p_, n_) == 0); }
  bool operator==(const std::vector<uint8_t>& v) const {
    return n_ == v.size() && (n_ == 0 || std::memcmp(p_, v.data(), n_) == 0);
  }

 private:
  std::shared_ptr<const void> owner_;
  const uint8_t* p_ = nullptr;
  size_t n_ = 0;
};

}  // namespace vshare
