// --kernel-cache: the kernel's page cache as one more holder of copies.
//
// With --kernel-cache the kernel keeps pages of the image and serves
// them without asking this node. So before anything lets another node
// change a block's bytes (answering a recall to NONE, granting WRITE to a
// child, evicting the block and telling the parent), the engine has the
// kernel's pages of that block dropped (a PageDrop effect; fuse/ carries it
// out with fuse_lowlevel_notify_inval_inode on a thread of its own) and
// goes on when PagesDropped says they are gone.
//
// A drop cannot simply take the permission away first and then drop: a
// kernel read of the block that arrives meanwhile would wait in the engine
// for the permission to come back while holding its page locked, and the
// kernel's drop waits for that page lock: a deadlock. So the fast path
// keeps serving the old bytes while the kernel drops (they are still
// current: the block's new owner is waiting for this very drop), and the
// drop goes in rounds: note the block's fast-path read count, drop the
// pages, and fence the block off the fast path only if no read was served
// in between (BlockTable::FenceIfUnread, under the set's lock). A read
// served during a round may have put an old page back, so the round is
// repeated. After a clean round no page of the block is in the kernel and
// none can come back: every later read misses and waits in the engine.
//
// One case still blocks a round: a kernel request that is waiting in the
// engine (a read of several blocks, one of which missed; a partial
// buffered write) holds the block's page locked, and the kernel's drop
// waits for it. The wait may be for this very drop, through another node:
// a deadlock. Such a page is not up to date, and Volume::Read, on a
// --kernel-cache mount, reads every block of a request again after its
// misses were fetched, so what it finally puts in the page comes after
// the fence: from the engine, current. So when the dropper says its call
// into the kernel has been stuck for a while (PagesBlocked) and a local
// request is waiting here, the engine fences the block itself and goes on
// (CheckBlockedDrops); the stuck call removes the page once it is
// unlocked. This needs one page per block: --kernel-cache asks for a
// block size equal to the page size.
//
// A lapsing lease and a rejoin drop the whole image: local access is
// fenced off first (kernel_fenced_ closes the fast path's window, and the
// engine holds local requests), then every page is dropped.
#include "core/log.h"
#include "core/replica.h"

namespace vshare {

bool Replica::KernelPagesGone(uint64_t block, Time) {
  if (!cfg_.kernel_cache || !table_) return true;
  BlockRun& run = runs_[block];
  if (run.pages == BlockRun::Pages::kDropping) return false;
  if (!HasCopy(block)) return true;  // nothing was served from here, so the kernel has nothing
  if (run.pages == BlockRun::Pages::kDropped) {
    // Still fenced: nothing has been read since the drop.
    BlockTable::Locked set = table_->Lock(block);
    const BlockTable::Slot* s = set.Find(block);
    if (!s || s->fenced) return true;
  }
  const uint64_t token = next_page_drop_++;
  page_drops_[token] = PageDropping{block};
  run.pages = BlockRun::Pages::kDropping;
  run.page_token = token;
  effects_.page_drops.push_back(PageDrop{token, block, 1, table_.get()});
  ++kernel_page_drops_;
  return false;
}

void Replica::KernelPagesUsed(uint64_t block) {
  if (!cfg_.kernel_cache) return;
  BlockRun& run = runs_[block];
  if (run.pages == BlockRun::Pages::kDropping) return;  // a later drop for the same block is under way
  if (run.pages == BlockRun::Pages::kDropped && table_) table_->Unfence(block);
  run.pages = BlockRun::Pages::kKept;
}

void Replica::PagesDropped(uint64_t token, Time now) {
  now_ = now;
  auto it = page_drops_.find(token);
  if (it == page_drops_.end()) return;  // settled already (CheckBlockedDrops)
  const uint64_t block = it->second.block;
  page_drops_.erase(it);
  auto run = runs_.find(block);
  if (run == runs_.end() || run->second.page_token != token) {
    if (table_) table_->Unfence(block);  // nobody waits for it any more
  } else {
    run->second.pages = BlockRun::Pages::kDropped;
    if (run->second.recall) ServeRecall(block, now);
    else Pump(block, now);
  }
  AfterEvent();
}

void Replica::PagesBlocked(uint64_t token, Time now) {
  now_ = now;
  auto it = page_drops_.find(token);
  if (it == page_drops_.end()) return;
  it->second.blocked = true;
  Log(LogLevel::kDebug, "volume " + cfg_.volume_name + ": dropping the kernel's pages of block " + std::to_string(it->second.block) +
           " is stuck on a locked page (" + std::to_string(local_ops_.size()) + " local requests wait here)");
  CheckBlockedDrops(now);
  AfterEvent();
}

void Replica::CheckBlockedDrops(Time now) {
  std::vector<uint64_t> settled;
  for (const auto& [token, d] : page_drops_) {
    // Stuck, with a kernel request waiting here: that is what holds the page.
    if (d.blocked && !local_ops_.empty()) settled.push_back(token);
  }
  for (uint64_t token : settled) {
    const uint64_t block = page_drops_[token].block;
    page_drops_.erase(token);
    Log(LogLevel::kDebug, "volume " + cfg_.volume_name + ": block " + std::to_string(block) +
             ": its locked page is a waiting request's; fenced, going on");
    table_->Fence(block);
    BlockRun& run = runs_[block];
    run.pages = BlockRun::Pages::kDropped;
    if (run.recall) ServeRecall(block, now);
    else Pump(block, now);
  }
}

void Replica::DropAllKernelPages() {
  if (!cfg_.kernel_cache || !table_) return;
  effects_.page_drops.push_back(PageDrop{0, 0, 0, table_.get()});
  ++kernel_full_drops_;
}

void Replica::CheckKernelFence(Time now) {
  if (!cfg_.kernel_cache || cfg_.is_root || !table_) return;
  // Renewals come every quarter of the lease; half of it gone without one
  // means the parent may be lost. Local access stops then, while the
  // copies are still good, and the kernel's pages are dropped, so none
  // outlives the lease.
  const bool low = !LeaseValid(now) || parent_lease_.until() - now < std::chrono::milliseconds(hb_ttl_ms_ / 2);
  if (low == kernel_fenced_) return;
  kernel_fenced_ = low;
  PublishWindow();
  if (low) {
    LogInfo("volume " + cfg_.volume_name + ": the lease is running out unrenewed; dropping the kernel's cached pages");
    DropAllKernelPages();
  } else {
    PumpAll(now);
  }
}

}  // namespace vshare
