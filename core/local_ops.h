// The engine calls that carry out a Volume's block operations
// (ControlPath::BlockOp), for every ControlPath: one starter per operation,
// and where each read's bytes go. The bytes to write are copied once, into
// one buffer the engine's jobs share, so the caller's may be reused as soon
// as the call returns (or gives up).
#pragma once

#include <functional>
#include <span>
#include <utility>
#include <vector>

#include "core/control_path.h"
#include "core/replica.h"

namespace vshare {

struct LocalStarts {
  using Starter = std::function<uint64_t(Replica&, Time)>;
  std::vector<Starter> starts;
  std::vector<uint8_t*> outs;                     // a read's destination (nullptr for a write)
  std::vector<std::pair<size_t, size_t>> ranges;  // offset and length within the block
};

LocalStarts StartsFor(std::span<const ControlPath::BlockOp> ops);

}  // namespace vshare
