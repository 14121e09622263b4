// ChildRegistry: a node's children as its block table knows them.
//
// Each child link gets a ChildIndex (a bit in a slot's holders) when it
// first needs one, and keeps it while any grant of it may stand. Retiring a
// link makes every grant it held void at once, whatever the size of the
// table: its bit counts for nothing from then on (stale_mask), and the
// table is swept clean of it a few sets per tick before the bit is handed
// to another child. The registry also counts, per child, how many blocks
// it holds, kept up to date as grants change, so no question about a
// child's grants needs a pass over the table.
//
// Not thread-safe: the engine's thread only.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <unordered_map>
#include <vector>

#include "core/block_table.h"
#include "core/coherence.h"

namespace vshare {

inline constexpr ChildIndex kNoIndex = -2;

class ChildRegistry {
 public:
  ChildRegistry();

  // The index of `link`, given one now if it has none; kLocalIndex for
  // kLocal; kNoIndex when all 64 are in use.
  ChildIndex IndexOf(LinkId link);
  // The index of `link`, or kNoIndex; never assigns.
  ChildIndex Find(LinkId link) const;
  LinkId LinkOf(ChildIndex i) const { return links_[i]; }
  // Every grant `link` holds is void from now on.
  void Retire(LinkId link);
  // Every child's grants are void (a takeover).
  void RetireAll();
  // Every link that has an index now.
  std::vector<LinkId> Links() const;
  // Bits of retired children, not yet swept from the table.
  uint64_t stale_mask() const { return stale_ | sweeping_; }
  // Sweeps up to `sets` sets of `table`; frees the bits a finished pass
  // covered.
  void Sweep(BlockTable& table, uint32_t sets);

  // Grants changed on one block from `before` to `after` (holder bitmaps).
  void Counted(uint64_t before, uint64_t after);
  uint64_t GrantCount(ChildIndex i) const { return i >= 0 ? counts_[i] : 0; }
  uint64_t GrantCount(LinkId link) const { return GrantCount(Find(link)); }
  uint64_t total_grants() const { return total_; }
  // The blocks held by the children in `mask`, each block counted once per child.
  uint64_t GrantsOf(uint64_t mask) const;
  uint64_t MaskOf(LinkId link) const {
    const ChildIndex i = Find(link);
    return i >= 0 ? uint64_t{1} << i : 0;
  }

  // What each joined child asked for in CONNECT (CONNECT_FLAGS).
  void SetFlags(LinkId link, uint32_t flags) { flags_[link] = flags; }
  std::optional<uint32_t> Flags(LinkId link) const;
  void ForgetFlags(LinkId link) { flags_.erase(link); }
  bool Joined(LinkId link) const { return flags_.count(link) > 0; }

 private:
  std::unordered_map<LinkId, ChildIndex> index_;
  std::array<LinkId, BlockTable::kMaxChildren> links_{};
  std::array<uint64_t, BlockTable::kMaxChildren> counts_{};
  uint64_t used_ = 0;      // bits assigned to a live link
  uint64_t stale_ = 0;     // retired, waiting for the next sweep
  uint64_t sweeping_ = 0;  // retired, being swept now
  bool pass_started_ = false;
  uint64_t total_ = 0;
  std::unordered_map<LinkId, uint32_t> flags_;
};

}  // namespace vshare
