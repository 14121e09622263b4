// Small conversions the engine's files share: permissions between the
// engine's type and the message's, and time left as a TTL in milliseconds.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>

#include "core/coherence.h"
#include "core/effects.h"
#include "core/message.h"

namespace vshare {

inline Perm FromWire(std::optional<WirePerm> p, Perm fallback) {
  return p ? static_cast<Perm>(static_cast<uint8_t>(*p)) : fallback;
}
inline WirePerm ToWire(Perm p) { return static_cast<WirePerm>(static_cast<uint16_t>(p)); }

// Milliseconds from `from` until `to` (0 when it has passed), as a TTL.
inline uint32_t MsUntil(Time from, Time to) {
  if (to <= from) return 0;
  return static_cast<uint32_t>(
      std::min<int64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(to - from).count(), UINT32_MAX));
}

}  // namespace vshare
