// The document behind MOUNTPOINT/.vshare/stats. Its fields are listed in
// doc/stats.md; scripts depend on them, so change them only additively.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "core/node.h"

namespace vshare {

struct NodeStatsContext {
  std::string mountpoint;
  double flush_interval_s = 0;
};

nlohmann::json NodeStatsJson(const Node& node, const NodeStatsContext& ctx);

}  // namespace vshare
