#include "core/bytes.h"

#include <doctest/doctest.h>

using namespace vshare;

TEST_CASE("bytes: a large buffer is reused once the last slice of it is gone") {
  uint8_t* w1 = nullptr;
  const uint8_t* first = nullptr;
  const size_t before = Bytes::PooledBytes();
  {
    Bytes a = Bytes::Allocate(1u << 20, &w1);
    std::memset(w1, 'a', 1u << 20);
    first = a.data();
    Bytes tail = a.Slice(4096, 4096);
    a = Bytes();
    CHECK(tail.data()[0] == 'a');  // a slice keeps the buffer alive
  }
  if (before + (1u << 20) > (size_t{16} << 20)) {  // the pool was full: it went back to malloc
    CHECK(Bytes::PooledBytes() == before);
    return;
  }
  CHECK(Bytes::PooledBytes() == before + (1u << 20));
  uint8_t* w2 = nullptr;
  Bytes b = Bytes::Allocate(900u << 10, &w2);  // the same size class (1 MiB)
  CHECK(b.data() == first);
  CHECK(Bytes::PooledBytes() == before);
  CHECK(b.size() == (900u << 10));
  // Two alive at once are two buffers.
  uint8_t* w3 = nullptr;
  Bytes c = Bytes::Allocate(1u << 20, &w3);
  CHECK(c.data() != b.data());
}

TEST_CASE("bytes: small and huge buffers are plain allocations, filled as asked") {
  uint8_t* w = nullptr;
  Bytes s = Bytes::Allocate(4096, &w);
  std::memset(w, 's', 4096);
  CHECK(s == std::vector<uint8_t>(4096, 's'));
  Bytes h = Bytes::Allocate(size_t{20} << 20, &w);
  w[(size_t{20} << 20) - 1] = 'h';
  CHECK(h.data()[h.size() - 1] == 'h');
  Bytes z = Bytes::Allocate(0, &w);
  CHECK(z.empty());
}
