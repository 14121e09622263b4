#include "core/bytes.h"

namespace vshare {

namespace {
const Bytes& SharedZeros() {
  static const Bytes kZeros = Bytes(std::vector<uint8_t>(size_t{16} << 20, 0));
  return kZeros;
}
}  // namespace

Bytes Bytes::Zeros(size_t n) {
  if (n <= SharedZeros().size()) return SharedZeros().Slice(0, n);
  return Bytes(std::vector<uint8_t>(n, 0));
}

bool Bytes::IsSharedZeros() const { return owner_ && owner_ == SharedZeros().owner_; }

}  // namespace vshare
