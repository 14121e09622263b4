#include "core/node.h"

#include "core/log.h"

namespace vshare {

VolumeIo* Node::FindVolume(const std::string& name) const {
  for (const auto& v : volumes_)
    if (v->name() == name) return v.get();
  return nullptr;
}

double Node::uptime_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
}

Status Node::FlushAll() {
  Status first;
  for (const auto& v : volumes_) {
    Status st = v->Flush();
    if (!st.ok() && first.ok()) first = st;
  }
  return first;
}

Status Node::DropCacheAll() {
  Status first;
  for (const auto& v : volumes_) {
    Status st = v->DropCache();
    if (!st.ok() && first.ok()) first = st;
  }
  return first;
}

void Node::ResetStats() {
  for (const auto& v : volumes_) v->ResetStats();
  if (tree_reset_) tree_reset_();
  std::lock_guard lock(mu_);
  last_error_.clear();
}

uint64_t Node::DirtyBlocks() const {
  uint64_t n = 0;
  for (const auto& v : volumes_) n += v->stats().cache.dirty_blocks;
  return n;
}

void Node::SetLastError(const std::string& what) {
  LogError(what);
  std::lock_guard lock(mu_);
  last_error_ = what;
}

std::string Node::last_error() const {
  std::lock_guard lock(mu_);
  return last_error_;
}

}  // namespace vshare
