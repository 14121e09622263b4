// Where a node turns when its parent fails: a pure rule, so that the
// simulation and the network node follow the same one.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

namespace vshare {

// In order, each once: the parent asked for on purpose (reparent), the
// lost parent's own ancestors (the grandparent first), the further places
// configured (--parent), the configured parent, and the lost parent itself
// last (it may come back).
inline std::vector<std::string> NextParents(const std::string& preferred, const std::vector<std::string>& upstream,
                                            const std::vector<std::string>& fallbacks, const std::string& configured,
                                            const std::string& lost) {
  std::vector<std::string> out;
  auto add = [&out](const std::string& a) {
    if (!a.empty() && std::find(out.begin(), out.end(), a) == out.end()) out.push_back(a);
  };
  add(preferred);
  for (const std::string& a : upstream) add(a);
  for (const std::string& a : fallbacks) add(a);
  add(configured);
  add(lost);
  return out;
}

}  // namespace vshare
