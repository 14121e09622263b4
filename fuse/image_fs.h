// ImageFs: the FUSE (low-level API) face of a node.
//
// The mountpoint holds one regular file NAME.img per volume, sized as the
// volume, and a directory .vshare with two files:
//   stats    read-only; each open takes a fresh JSON snapshot (fuse/stats_json.h)
//   control  write-only; each write is one command (fuse/control.h)
//
// Image files are opened with direct I/O by default: every read and write
// reaches the volume, so vshare's cache is the only cache below the caller and
// nothing is held in the kernel where vshare cannot see it. With
// --kernel-cache they keep the kernel's page cache instead, and the engine has
// pages dropped before their bytes may change elsewhere (core/kernel_pages.cc).
// The kernel's FUSE writeback cache is never enabled: writes always reach
// vshare before they are acknowledged.
#pragma once

#include <functional>
#include <string>

#include "core/node.h"
#include "fuse/page_dropper.h"

namespace vshare {

// The inode of volume i's image file (i in the order of Node::volumes()).
inline constexpr fuse_ino_t kFirstVolumeIno = 16;

struct MountOptions {
  std::string mountpoint;      // absolute path of an existing, unmounted directory
  bool foreground = false;     // stay in the foreground (else daemonise after mounting)
  bool fuse_debug = false;     // libfuse request tracing to stderr
  unsigned max_threads = 16;   // FUSE worker threads
  // Requests the kernel keeps in flight to us at once for asynchronous I/O
  // (libaio, read-ahead): libfuse's default of 12 caps a QD16 reader. The
  // kernel starts throttling submitters at 3/4 of it.
  unsigned max_background = 64;
  double flush_interval_s = 5; // background write-back period; 0 turns it off
  std::string log_file;        // where a daemon logs; empty means syslog
  // --kernel-cache: image files keep their pages in the kernel (no direct
  // I/O); `page_dropper` (attached to the session here) drops them when
  // the engine asks.
  bool kernel_cache = false;
  PageDropper* page_dropper = nullptr;
  // Runs after the mount, in the serving process (after the fork when
  // daemonising), before requests are served: starts what needs threads,
  // such as joining the tree. A failure unmounts and is reported.
  std::function<Status()> start;
};

// Mounts `node` at opts.mountpoint and serves it until unmounted or sent
// SIGTERM/SIGINT/SIGHUP; then writes every dirty block back to the store,
// unmounts, and returns. Returns a process exit code: 0 on a clean shutdown,
// 1 if the mount failed (after printing one line why) or the final flush
// failed (the log says which volume and how many blocks were not written).
int ServeMount(Node& node, const MountOptions& opts);

}  // namespace vshare
