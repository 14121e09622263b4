// Commands written to MOUNTPOINT/.vshare/control, one JSON object per write:
//   {"cmd":"flush"}        write every dirty block to the store and sync it
//   {"cmd":"drop-cache"}   flush, then empty the caches
//   {"cmd":"reset-stats"}  zero the counters and last_error
// A bad command returns kInvalidArgument with the reason, which is also
// recorded as the node's last error and logged.
#pragma once

#include <string_view>

#include "core/node.h"

namespace vshare {

Status ExecuteControl(Node& node, std::string_view text);

}  // namespace vshare
