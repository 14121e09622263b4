#include "core/bytes.h"

#include <array>
#include <atomic>
#include <bit>
#include <mutex>

namespace vshare {

namespace {

// Buffers of 256 KiB to 16 MiB, by power-of-two size class. At most
// kKeepBytes in all wait for reuse (counted in RSS: the --cache-size + 64
// MiB bound has room for it); the rest go back to malloc. Freed
// from any thread (a Bytes may be dropped anywhere), so under a mutex: one
// lock per buffer of a MiB or more costs nothing next to filling it.
class BufferPool {
 public:
  static constexpr size_t kMinShift = 18, kMaxShift = 24;
  static constexpr size_t kKeepBytes = size_t{16} << 20;

  static BufferPool& Get() {
    static BufferPool* pool = new BufferPool;  // never destroyed: buffers may be freed at exit
    return *pool;
  }
  // The class of a request of `n` bytes, or -1 when the pool does not serve it.
  static int ClassOf(size_t n) {
    if (n < (size_t{1} << kMinShift) || n > (size_t{1} << kMaxShift)) return -1;
    return static_cast<int>(std::bit_width(n - 1) - kMinShift);
  }
  uint8_t* Take(int c) {
    {
      std::lock_guard lock(mu_);
      if (!free_[c].empty()) {
        uint8_t* p = free_[c].back();
        free_[c].pop_back();
        kept_ -= size_t{1} << (kMinShift + c);
        return p;
      }
    }
    return new uint8_t[size_t{1} << (kMinShift + c)];
  }
  size_t kept() {
    std::lock_guard lock(mu_);
    return kept_;
  }
  void Give(int c, uint8_t* p) {
    {
      std::lock_guard lock(mu_);
      const size_t size = size_t{1} << (kMinShift + c);
      if (kept_ + size <= kKeepBytes) {
        free_[c].push_back(p);
        kept_ += size;
        return;
      }
    }
    delete[] p;
  }

 private:
  std::mutex mu_;
  std::array<std::vector<uint8_t*>, kMaxShift - kMinShift + 1> free_;
  size_t kept_ = 0;
};

// Set once the shared zeros exist: until then no Bytes can lie in them,
// and asking must not make them (16 MiB to fault in, on a node that keeps
// real bytes and never needs them).
std::atomic<bool> zeros_made{false};

const Bytes& SharedZeros() {
  static const Bytes kZeros = [] {
    Bytes z(std::vector<uint8_t>(size_t{16} << 20, 0));
    zeros_made.store(true, std::memory_order_release);
    return z;
  }();
  return kZeros;
}
}  // namespace

Bytes Bytes::Zeros(size_t n) {
  if (n <= SharedZeros().size()) return SharedZeros().Slice(0, n);
  return Bytes(std::vector<uint8_t>(n, 0));
}

Bytes Bytes::Allocate(size_t n, uint8_t** writable) {
  Bytes b;
  const int c = BufferPool::ClassOf(n);
  uint8_t* p;
  if (c < 0) {
    std::shared_ptr<uint8_t[]> buf(new uint8_t[n ? n : 1]);
    p = buf.get();
    b.owner_ = std::move(buf);
  } else {
    p = BufferPool::Get().Take(c);
    b.owner_ = std::shared_ptr<const void>(p, [c](const void* q) {
      BufferPool::Get().Give(c, static_cast<uint8_t*>(const_cast<void*>(q)));
    });
  }
  b.p_ = p;
  b.n_ = n;
  *writable = p;
  return b;
}

size_t Bytes::PooledBytes() { return BufferPool::Get().kept(); }

bool Bytes::IsSharedZeros() const {
  return owner_ && zeros_made.load(std::memory_order_acquire) && owner_ == SharedZeros().owner_;
}

}  // namespace vshare
