#include "core/child_registry.h"

namespace vshare {

ChildRegistry::ChildRegistry() {}

ChildIndex ChildRegistry::Find(LinkId link) const {
  if (link == kLocal) return kLocalIndex;
  auto it = index_.find(link);
  return it == index_.end() ? kNoIndex : it->second;
}

ChildIndex ChildRegistry::IndexOf(LinkId link) {
  const ChildIndex found = Find(link);
  if (found != kNoIndex) return found;
  const uint64_t free = ~(used_ | stale_ | sweeping_);
  if (free == 0) return kNoIndex;
  const ChildIndex i = __builtin_ctzll(free);
  used_ |= uint64_t{1} << i;
  links_[i] = link;
  counts_[i] = 0;
  index_[link] = i;
  return i;
}

void ChildRegistry::Retire(LinkId link) {
  auto it = index_.find(link);
  if (it == index_.end()) return;
  const ChildIndex i = it->second;
  index_.erase(it);
  used_ &= ~(uint64_t{1} << i);
  stale_ |= uint64_t{1} << i;
  total_ -= counts_[i];
  counts_[i] = 0;
}

void ChildRegistry::RetireAll() {
  std::vector<LinkId> all;
  for (const auto& [link, i] : index_) all.push_back(link);
  for (LinkId l : all) Retire(l);
}

std::vector<LinkId> ChildRegistry::Links() const {
  std::vector<LinkId> out;
  for (const auto& [link, i] : index_) out.push_back(link);
  return out;
}

void ChildRegistry::Sweep(BlockTable& table, uint32_t sets) {
  if (!sweeping_) {
    if (!stale_) return;
    sweeping_ = stale_;
    stale_ = 0;
    pass_started_ = true;
  }
  if (table.SweepHolders(sweeping_, sets, pass_started_)) sweeping_ = 0;
  pass_started_ = false;
}

void ChildRegistry::Counted(uint64_t before, uint64_t after) {
  const uint64_t live = used_;
  for (uint64_t gone = before & ~after & live; gone; gone &= gone - 1) {
    --counts_[__builtin_ctzll(gone)];
    --total_;
  }
  for (uint64_t added = after & ~before & live; added; added &= added - 1) {
    ++counts_[__builtin_ctzll(added)];
    ++total_;
  }
}

uint64_t ChildRegistry::GrantsOf(uint64_t mask) const {
  uint64_t n = 0;
  for (uint64_t m = mask & used_; m; m &= m - 1) n += counts_[__builtin_ctzll(m)];
  return n;
}

std::optional<uint32_t> ChildRegistry::Flags(LinkId link) const {
  auto it = flags_.find(link);
  if (it == flags_.end()) return std::nullopt;
  return it->second;
}

}  // namespace vshare
