// PageDropper: carries out the engine's PageDrop effects (core/effects.h)
// for --kernel-cache, by telling the kernel to forget cached pages of an
// image file (fuse_lowlevel_notify_inval_inode).
//
// The kernel's drop waits for pages that are locked, and a page stays
// locked while the request that fills it is served. So drops never run on
// a FUSE worker or on the engine's thread: they have threads of their own,
// and a call that stays stuck is reported (Report(true)) so the engine can
// tell why (core/kernel_pages.cc). A block's drop goes in rounds against the
// block table's read count, and ends with the block fenced off the fast
// path; a whole-image drop is one call.
#pragma once

#include <fuse_lowlevel.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "core/effects.h"

namespace vshare {

class PageDropper {
 public:
  // Called once with false when the drop is done; before that, possibly
  // once with true if a call into the kernel is stuck for kStuckAfter.
  using Report = std::function<void(bool stuck)>;
  static constexpr auto kStuckAfter = std::chrono::milliseconds(20);

  PageDropper() = default;
  ~PageDropper() { Detach(); }
  PageDropper(const PageDropper&) = delete;
  PageDropper& operator=(const PageDropper&) = delete;

  // Starts the threads (in the process that serves: after any fork). Until
  // then, and after Detach, a drop completes at once: no kernel pages can
  // exist while the file system is not being served.
  void Attach(fuse_session* se);
  // Finishes the drops under way and stops the threads.
  void Detach();

  // Drops the kernel's pages of `d` in image inode `ino`.
  void Drop(fuse_ino_t ino, uint32_t block_size, const PageDrop& d, Report report);

  uint64_t drops() const { return drops_; }

 private:
  struct Task {
    fuse_ino_t ino = 0;
    uint32_t block_size = 0;
    PageDrop drop;
    Report report;
  };
  struct Worker {
    std::thread thread;
    // When its current call into the kernel started (0: not in one), and
    // whether that was reported stuck. Guarded by mu_.
    std::chrono::steady_clock::time_point call_since{};
    bool in_call = false;
    bool reported = false;
    Report* report = nullptr;
  };
  void Work(Worker* w);
  void Watch();
  void Run(Worker* w, Task& t);
  // One call into the kernel, with the watchdog told about it.
  void Call(Worker* w, Task& t, off_t off, off_t len);

  static constexpr int kThreads = 4;
  fuse_session* se_ = nullptr;
  std::mutex mu_;
  std::condition_variable cv_;        // workers: a task, or stop
  std::condition_variable watch_cv_;  // the watchdog: stop
  std::deque<Task> queue_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::thread watchdog_;
  bool stopping_ = false;
  uint64_t drops_ = 0;
};

}  // namespace vshare
