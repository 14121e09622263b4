#include "core/bytes.h"

namespace vshare {

Bytes Bytes::Zeros(size_t n) {
  static const Bytes kZeros = Bytes(std::vector<uint8_t>(size_t{1} << 20, 0));
  if (n <= kZeros.size()) return kZeros.Slice(0, n);
  return Bytes(std::vector<uint8_t>(n, 0));
}

}  // namespace vshare
