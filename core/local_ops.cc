#include "core/local_ops.h"

#include <cstring>

namespace vshare {

LocalStarts StartsFor(std::span<const ControlPath::BlockOp> ops) {
  // The bytes of writes and of flushes that carry theirs, side by side in
  // one buffer: a run of them goes up as one slice, uncopied.
  size_t write_bytes = 0;
  for (const ControlPath::BlockOp& op : ops)
    if (op.in) write_bytes += op.length;
  uint8_t* w = nullptr;
  Bytes written;
  if (write_bytes) written = Bytes::Allocate(write_bytes, &w);
  LocalStarts out;
  out.starts.reserve(ops.size());
  size_t at = 0;
  for (const ControlPath::BlockOp& op : ops) {
    const uint64_t b = op.block;
    if (op.kind == ControlPath::BlockOp::Kind::kRead) {
      out.starts.push_back([b](Replica& r, Time now) { return r.ReadLocal(b, now); });
      out.outs.push_back(op.out);
    } else if (op.kind == ControlPath::BlockOp::Kind::kFlushDurable) {
      std::optional<Carried> carried;
      if (op.in) {
        std::memcpy(w + at, op.in, op.length);
        carried = Carried{written.Slice(at, op.length), op.mark};
        at += op.length;
      }
      out.starts.push_back([b, carried](Replica& r, Time now) {
        return r.FlushLocal(b, Perm::kWrite, now, /*durable=*/true, carried ? &*carried : nullptr);
      });
      out.outs.push_back(nullptr);
    } else {
      std::memcpy(w + at, op.in, op.length);
      Bytes slice = written.Slice(at, op.length);
      at += op.length;
      const size_t off = op.offset;
      out.starts.push_back([b, off, slice](Replica& r, Time now) { return r.WriteLocal(b, off, slice, now); });
      out.outs.push_back(nullptr);
    }
    out.ranges.push_back({op.offset, op.length});
  }
  return out;
}

}  // namespace vshare
