// libFuzzer target for the wire decoder. Whatever the bytes, Decode must
// return without a crash, a leak or undefined behaviour, never claim more
// bytes than it was given, and whatever it accepts must re-encode to a frame
// that decodes to the same message.
#include <cstdlib>

#include "net/wire.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace vshare;
  std::span<const uint8_t> in(data, size);
  while (!in.empty()) {
    Message m;
    size_t used = 0;
    wire::DecodeError err;
    wire::DecodeResult r = wire::Decode(in, &m, &used, &err);
    if (used > in.size()) std::abort();
    if (r == wire::DecodeResult::kGood) {  // the same frame, decoded without copying DATA
      const Bytes owned = Bytes::Copy(in.subspan(0, used));
      Message shared;
      size_t used_shared = 0;
      if (wire::Decode(owned.span(), &shared, &used_shared, &err, &owned) != wire::DecodeResult::kGood ||
          !(shared == m) || used_shared != used)
        std::abort();
    }
    if (r == wire::DecodeResult::kGood) {
      std::vector<uint8_t> again;
      if (!wire::Encode(m, &again)) std::abort();
      Message m2;
      size_t used2 = 0;
      if (wire::Decode(again, &m2, &used2, &err) != wire::DecodeResult::kGood || !(m2 == m) ||
          used2 != again.size())
        std::abort();
    } else if (r == wire::DecodeResult::kBad) {
      std::vector<uint8_t> reply;
      if (!wire::Encode(wire::ErrorReply(err), &reply)) std::abort();
    }
    if (r == wire::DecodeResult::kNeedMore || used == 0) break;
    in = in.subspan(used);
  }
  return 0;
}
