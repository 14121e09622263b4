#include "fuse/page_dropper.h"

#include <cerrno>
#include <cstring>

#include "core/block_table.h"
#include "core/log.h"

namespace vshare {

void PageDropper::Attach(fuse_session* se) {
  std::lock_guard lock(mu_);
  if (se_) return;
  se_ = se;
  stopping_ = false;
  for (int i = 0; i < kThreads; ++i) {
    workers_.push_back(std::make_unique<Worker>());
    Worker* w = workers_.back().get();
    w->thread = std::thread([this, w] { Work(w); });
  }
  watchdog_ = std::thread([this] { Watch(); });
}

void PageDropper::Detach() {
  {
    std::lock_guard lock(mu_);
    if (!se_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  watch_cv_.notify_all();
  for (auto& w : workers_) w->thread.join();
  watchdog_.join();
  std::lock_guard lock(mu_);
  workers_.clear();
  se_ = nullptr;
}

void PageDropper::Drop(fuse_ino_t ino, uint32_t block_size, const PageDrop& d, Report report) {
  {
    std::lock_guard lock(mu_);
    if (se_ && !stopping_) {
      queue_.push_back(Task{ino, block_size, d, std::move(report)});
      cv_.notify_one();
      return;
    }
  }
  // Not serving: the kernel holds no pages of ours. Fence as a drop would.
  if (d.token && d.table) d.table->Fence(d.first);
  report(false);
}

void PageDropper::Work(Worker* w) {
  for (;;) {
    Task t;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and nothing left
      t = std::move(queue_.front());
      queue_.pop_front();
      w->report = &t.report;
    }
    Run(w, t);
    {
      std::lock_guard lock(mu_);
      w->report = nullptr;
      ++drops_;
    }
    t.report(false);
  }
}

void PageDropper::Call(Worker* w, Task& t, off_t off, off_t len) {
  {
    std::lock_guard lock(mu_);
    w->in_call = true;
    w->reported = false;
    w->call_since = std::chrono::steady_clock::now();
  }
  watch_cv_.notify_one();
  // -ENOENT: the kernel has not looked the file up, so it has no pages.
  const int rc = fuse_lowlevel_notify_inval_inode(se_, t.ino, off, len);
  if (rc != 0 && rc != -ENOENT)
    LogWarning("dropping the kernel's cached pages of inode " + std::to_string(t.ino) + " failed: " +
               std::strerror(-rc));
  std::lock_guard lock(mu_);
  w->in_call = false;
}

void PageDropper::Run(Worker* w, Task& t) {
  const PageDrop& d = t.drop;
  if (d.count == 0) {  // the whole image
    Call(w, t, 0, 0);
    return;
  }
  const off_t off = static_cast<off_t>(d.first * t.block_size);
  const off_t len = static_cast<off_t>(d.count * t.block_size);
  if (!d.token || !d.table) {
    Call(w, t, off, len);
    return;
  }
  // Rounds (core/kernel_pages.cc): done once no fast-path read of the block
  // was served while the kernel dropped its pages.
  for (int round = 0;; ++round) {
    const uint32_t reads = d.table->ReadCount(d.first);
    Call(w, t, off, len);
    if (d.table->FenceIfUnread(d.first, reads)) return;
    if (round == 63) {
      // A reader that keeps coming back: fence first, then drop once more
      // (a page that waits for the engine now is not up to date).
      d.table->Fence(d.first);
      Call(w, t, off, len);
      return;
    }
    // Give the reader's next request time to come in before the next round.
    std::this_thread::sleep_for(std::chrono::microseconds(std::min(50 << std::min(round, 5), 2000)));
  }
}

void PageDropper::Watch() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    bool calls = false;
    for (auto& w : workers_) calls |= w->in_call && !w->reported;
    if (calls) watch_cv_.wait_for(lock, std::chrono::milliseconds(5));
    else watch_cv_.wait(lock);  // idle: woken by the next call, or Detach
    const auto now = std::chrono::steady_clock::now();
    for (auto& w : workers_)
      if (w->in_call && !w->reported && w->report && now - w->call_since >= kStuckAfter) {
        w->reported = true;
        (*w->report)(true);
      }
  }
}

}  // namespace vshare
