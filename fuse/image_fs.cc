#include "fuse/image_fs.h"

#include <fuse3/fuse_lowlevel.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <thread>

#include "core/daemon.h"
#include "core/log.h"
#include "fuse/control.h"
#include "fuse/image_open.h"
#include "fuse/reply.h"
#include "fuse/stats_json.h"

namespace vshare {

namespace {

// Inode numbers. Volume i is kFirstVolumeIno + i.
constexpr fuse_ino_t kRootIno = FUSE_ROOT_ID;
constexpr fuse_ino_t kMetaDirIno = 2;
constexpr fuse_ino_t kStatsIno = 3;
constexpr fuse_ino_t kControlIno = 4;
constexpr double kAttrTimeout = 1.0;
constexpr size_t kMaxIo = 1 << 20;

// The real kernel side of a Reply.
struct FuseReplies {
  using Req = fuse_req_t;
  using FileInfo = fuse_file_info;
  using EntryParam = fuse_entry_param;
  static int Err(Req r, int err) { return fuse_reply_err(r, err); }
  static int Entry(Req r, const EntryParam* e) { return fuse_reply_entry(r, e); }
  static int Attr(Req r, const struct stat* st, double timeout) { return fuse_reply_attr(r, st, timeout); }
  static int Open(Req r, const FileInfo* fi) { return fuse_reply_open(r, fi); }
  static int Buf(Req r, const void* data, size_t n) { return fuse_reply_buf(r, static_cast<const char*>(data), n); }
  static int Write(Req r, size_t n) { return fuse_reply_write(r, n); }
  static int Statfs(Req r, const struct statvfs* s) { return fuse_reply_statfs(r, s); }
};
using Reply = BasicReply<FuseReplies>;

// A snapshot of the stats document, taken at open and read from there, so a
// reader sees one consistent document however it splits its reads. Shared:
// a read holds its own reference while it replies, because the reader can
// close the file (and release free the handle) before fuse_reply_buf has
// returned on this thread.
struct StatsHandle {
  std::shared_ptr<const std::string> text;
};

class ImageFs {
 public:
  ImageFs(Node& node, const MountOptions& opts) : node_(node), opts_(opts) {
    const uid_t uid = getuid();
    const gid_t gid = getgid();
    uid_ = uid;
    gid_ = gid;
    mount_time_ = time(nullptr);
  }

  Node& node() { return node_; }
  const MountOptions& opts() const { return opts_; }

  VolumeIo* VolumeOf(fuse_ino_t ino) const {
    if (ino < kFirstVolumeIno) return nullptr;
    size_t i = ino - kFirstVolumeIno;
    return i < node_.volumes().size() ? node_.volumes()[i].get() : nullptr;
  }

  bool Stat(fuse_ino_t ino, struct stat* st) const {
    std::memset(st, 0, sizeof *st);
    st->st_ino = ino;
    st->st_uid = uid_;
    st->st_gid = gid_;
    st->st_atime = st->st_mtime = st->st_ctime = mount_time_;
    st->st_blksize = 4096;
    if (ino == kRootIno || ino == kMetaDirIno) {
      st->st_mode = S_IFDIR | 0755;
      st->st_nlink = ino == kRootIno ? 3 : 2;
      return true;
    }
    if (ino == kStatsIno) {
      st->st_mode = S_IFREG | 0444;
      st->st_nlink = 1;
      return true;
    }
    if (ino == kControlIno) {
      st->st_mode = S_IFREG | 0200;
      st->st_nlink = 1;
      return true;
    }
    if (VolumeIo* v = VolumeOf(ino)) {
      st->st_mode = S_IFREG | (v->read_only() ? 0444 : 0644);
      st->st_nlink = 1;
      st->st_size = static_cast<off_t>(v->size());
      st->st_blksize = v->block_size();
      st->st_blocks = static_cast<blkcnt_t>((v->size() + 511) / 512);
      return true;
    }
    return false;
  }

  // Name lookup in one of our two directories; 0 when absent.
  fuse_ino_t Lookup(fuse_ino_t parent, const std::string& name) const {
    if (parent == kRootIno) {
      if (name == ".vshare") return kMetaDirIno;
      for (size_t i = 0; i < node_.volumes().size(); ++i)
        if (name == node_.volumes()[i]->name() + ".img") return kFirstVolumeIno + i;
    } else if (parent == kMetaDirIno) {
      if (name == "stats") return kStatsIno;
      if (name == "control") return kControlIno;
    }
    return 0;
  }

  std::string StatsText() const {
    NodeStatsContext ctx{opts_.mountpoint, opts_.flush_interval_s};
    return NodeStatsJson(node_, ctx).dump(2) + "\n";
  }

 private:
  Node& node_;
  const MountOptions opts_;
  uid_t uid_;
  gid_t gid_;
  time_t mount_time_;
};

ImageFs* Fs(fuse_req_t req) { return static_cast<ImageFs*>(fuse_req_userdata(req)); }

// The exception wall for FUSE: anything thrown by a handler becomes EIO
// (through Reply's destructor) and a log line, never a dead daemon.
template <typename F>
void Guard(fuse_req_t req, const char* op, F&& body) {
  Reply reply(req);
  try {
    body(reply);
  } catch (const std::exception& e) {
    LogError(std::string(op) + ": internal error: " + e.what());
  } catch (...) {
    LogError(std::string(op) + ": internal error");
  }
}

void OpInit(void* userdata, fuse_conn_info* conn) {
  conn->max_write = kMaxIo;
  conn->max_readahead = kMaxIo;
  const unsigned background = static_cast<ImageFs*>(userdata)->opts().max_background;
  conn->max_background = background;
  conn->congestion_threshold = std::max(1u, background * 3 / 4);
  // Never hold writes in the kernel where vshare cannot see or recall them.
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  // Pages go only when vshare says so, not on a changed mtime.
  conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
}

void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Guard(req, "lookup", [&](Reply& r) {
    fuse_ino_t ino = Fs(req)->Lookup(parent, name);
    if (!ino) return r.Err(ENOENT);
    fuse_entry_param e;
    std::memset(&e, 0, sizeof e);
    e.ino = ino;
    e.attr_timeout = kAttrTimeout;
    e.entry_timeout = kAttrTimeout;
    Fs(req)->Stat(ino, &e.attr);
    r.Entry(e);
  });
}

void OpGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  Guard(req, "getattr", [&](Reply& r) {
    struct stat st;
    if (!Fs(req)->Stat(ino, &st)) return r.Err(ENOENT);
    r.Attr(st, kAttrTimeout);
  });
}

void OpSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info*) {
  Guard(req, "setattr", [&](Reply& r) {
    struct stat st;
    if (!Fs(req)->Stat(ino, &st)) return r.Err(ENOENT);
    if (to_set & FUSE_SET_ATTR_SIZE) {
      // The control file may be opened with O_TRUNC (echo > control); an
      // image is a fixed-size device and cannot be resized this way.
      if (ino == kControlIno) {
      } else if (Fs(req)->VolumeOf(ino) && attr->st_size == st.st_size) {
      } else {
        return r.Err(EPERM);
      }
    }
    // Mode, owner and time changes are accepted and not kept.
    r.Attr(st, kAttrTimeout);
  });
}

void OpReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  Guard(req, "readdir", [&](Reply& r) {
    ImageFs* fs = Fs(req);
    std::vector<std::pair<std::string, fuse_ino_t>> entries = {{".", ino}, {"..", kRootIno}};
    if (ino == kRootIno) {
      entries.push_back({".vshare", kMetaDirIno});
      for (size_t i = 0; i < fs->node().volumes().size(); ++i)
        entries.push_back({fs->node().volumes()[i]->name() + ".img", kFirstVolumeIno + i});
    } else if (ino == kMetaDirIno) {
      entries.push_back({"stats", kStatsIno});
      entries.push_back({"control", kControlIno});
    } else {
      return r.Err(ENOTDIR);
    }
    std::vector<char> buf(size);
    size_t used = 0;
    for (size_t i = static_cast<size_t>(off); i < entries.size(); ++i) {
      struct stat st;
      std::memset(&st, 0, sizeof st);
      st.st_ino = entries[i].second;
      fs->Stat(entries[i].second, &st);
      size_t need = fuse_add_direntry(req, buf.data() + used, size - used, entries[i].first.c_str(), &st,
                                      static_cast<off_t>(i + 1));
      if (need > size - used) break;
      used += need;
    }
    r.Buf(buf.data(), used);
  });
}

void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Guard(req, "open", [&](Reply& r) {
    ImageFs* fs = Fs(req);
    const int acc = fi->flags & O_ACCMODE;
    if (ino == kStatsIno) {
      if (acc != O_RDONLY) return r.Err(EACCES);
      auto* h = new StatsHandle{std::make_shared<const std::string>(fs->StatsText())};
      fi->fh = reinterpret_cast<uint64_t>(h);
      fi->direct_io = 1;  // size is not known in advance
      if (r.Open(fi) != 0) delete h;  // interrupted: no release will come
      return;
    }
    if (ino == kControlIno) {
      if (acc == O_RDONLY) return r.Err(EACCES);
      fi->direct_io = 1;
      (void)r.Open(fi);
      return;
    }
    VolumeIo* v = fs->VolumeOf(ino);
    if (!v) return r.Err(ino == kRootIno || ino == kMetaDirIno ? EISDIR : ENOENT);
    OpenImage(*v, fi, r, fs->opts().kernel_cache);
  });
}

void OpRelease(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Guard(req, "release", [&](Reply& r) {
    if (ino == kStatsIno) delete reinterpret_cast<StatsHandle*>(fi->fh);
    if (fi->fh == kWriterHandle)
      if (VolumeIo* v = Fs(req)->VolumeOf(ino)) v->CloseForWrite();
    r.Err(0);
  });
}

void OpRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  Guard(req, "read", [&](Reply& r) {
    if (off < 0) return r.Err(EINVAL);
    if (ino == kStatsIno) {
      std::shared_ptr<const std::string> text = reinterpret_cast<StatsHandle*>(fi->fh)->text;
      size_t start = std::min(text->size(), static_cast<size_t>(off));
      return r.Buf(text->data() + start, std::min(size, text->size() - start));
    }
    VolumeIo* v = Fs(req)->VolumeOf(ino);
    if (!v) return r.Err(EBADF);
    // One buffer per worker thread, grown once: no allocation per read.
    thread_local std::vector<std::byte> buf;
    if (buf.size() < size) buf.resize(std::max(size, kMaxIo));
    size_t done = 0;
    Status st = v->Read(static_cast<uint64_t>(off), std::span(buf.data(), size), &done);
    if (!st.ok()) {
      LogWarning("read of " + v->name() + " at " + std::to_string(off) + ": " + st.ToString());
      return r.Status(st);
    }
    r.Buf(buf.data(), done);
  });
}

void OpWrite(fuse_req_t req, fuse_ino_t ino, const char* data, size_t size, off_t off, fuse_file_info*) {
  Guard(req, "write", [&](Reply& r) {
    if (off < 0) return r.Err(EINVAL);
    ImageFs* fs = Fs(req);
    if (ino == kControlIno) {
      Status st = ExecuteControl(fs->node(), std::string_view(data, size));
      if (!st.ok()) return r.Status(st);
      return r.Write(size);
    }
    VolumeIo* v = fs->VolumeOf(ino);
    if (!v) return r.Err(EBADF);
    size_t done = 0;
    Status st = v->Write(static_cast<uint64_t>(off), std::span(reinterpret_cast<const std::byte*>(data), size), &done);
    if (!st.ok()) {
      if (st.code() != Status::Code::kOutOfRange)
        LogWarning("write of " + v->name() + " at " + std::to_string(off) + ": " + st.ToString());
      return r.Status(st);
    }
    r.Write(done);
  });
}

void OpFsync(fuse_req_t req, fuse_ino_t ino, int, fuse_file_info*) {
  Guard(req, "fsync", [&](Reply& r) {
    VolumeIo* v = Fs(req)->VolumeOf(ino);
    if (!v) return r.Err(0);
    Status st = v->Flush();
    if (!st.ok()) Fs(req)->node().SetLastError("fsync of " + v->name() + ": " + st.ToString());
    r.Status(st);
  });
}

void OpFlush(fuse_req_t req, fuse_ino_t, fuse_file_info*) {
  // close() is not a durability point for a block device; fsync is.
  Guard(req, "flush", [&](Reply& r) { r.Err(0); });
}

void OpFallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len, fuse_file_info*) {
  Guard(req, "fallocate", [&](Reply& r) {
    VolumeIo* v = Fs(req)->VolumeOf(ino);
    if (!v) return r.Err(EOPNOTSUPP);
    // Every block of a fixed-size image already exists: plain allocation
    // inside it succeeds, beyond it there is no room. Hole punching and
    // zeroing are not offered; callers such as mkfs fall back to writing.
    if (mode != 0) return r.Err(EOPNOTSUPP);
    if (off < 0 || len <= 0) return r.Err(EINVAL);
    if (static_cast<uint64_t>(off) + static_cast<uint64_t>(len) > v->size()) return r.Err(ENOSPC);
    r.Err(0);
  });
}

void OpStatfs(fuse_req_t req, fuse_ino_t) {
  Guard(req, "statfs", [&](Reply& r) {
    struct statvfs s;
    std::memset(&s, 0, sizeof s);
    uint64_t total = 0;
    for (const auto& v : Fs(req)->node().volumes()) total += v->size();
    s.f_bsize = 4096;
    s.f_frsize = 4096;
    s.f_blocks = total / 4096;
    s.f_files = Fs(req)->node().volumes().size() + 4;
    s.f_namemax = 255;
    r.Statfs(s);
  });
}

fuse_lowlevel_ops MakeOps() {
  fuse_lowlevel_ops ops;
  std::memset(&ops, 0, sizeof ops);
  ops.init = OpInit;
  ops.lookup = OpLookup;
  ops.getattr = OpGetattr;
  ops.setattr = OpSetattr;
  ops.readdir = OpReaddir;
  ops.open = OpOpen;
  ops.release = OpRelease;
  ops.read = OpRead;
  ops.write = OpWrite;
  ops.fsync = OpFsync;
  ops.flush = OpFlush;
  ops.fallocate = OpFallocate;
  ops.statfs = OpStatfs;
  return ops;
}

// Writes dirty blocks back every `interval` seconds until stopped, so a
// crash of this process loses at most that much of what was not fsynced.
class Flusher {
 public:
  Flusher(Node& node, double interval_s) : node_(node), interval_s_(interval_s) {
    TerminationSignalsBlocked blocked;  // signals are for libfuse's loop
    if (interval_s_ > 0) thread_ = std::thread([this] { Run(); });
  }
  ~Flusher() { Stop(); }
  void Stop() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Run() {
    std::unique_lock lock(mu_);
    const auto period = std::chrono::duration<double>(interval_s_);
    while (!cv_.wait_for(lock, period, [this] { return stop_; })) {
      lock.unlock();
      if (node_.DirtyBlocks() > 0) {
        Status st = node_.FlushAll();
        if (!st.ok()) node_.SetLastError("background flush: " + st.ToString());
      }
      lock.lock();
    }
  }
  Node& node_;
  const double interval_s_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  std::thread thread_;
};

// Flushes every volume at shutdown, logging progress; returns the exit code.
int FinalFlush(Node& node) {
  uint64_t dirty = node.DirtyBlocks();
  if (dirty > 0) LogInfo("shutdown: writing " + std::to_string(dirty) + " dirty blocks to the store");
  Status st = node.FlushAll();
  if (!st.ok()) {
    const uint64_t left = node.DirtyBlocks();
    // With nothing dirty here, what failed is the sync through the tree:
    // blocks sent up earlier may not have reached the root's disk yet.
    LogError(left ? "shutdown: flush failed, " + std::to_string(left) + " dirty blocks were not written: " + st.ToString()
                  : "shutdown: no dirty blocks are left here, but the root did not confirm that its store is synced: " +
                        st.ToString());
    return 1;
  }
  LogInfo("shutdown: all blocks written and synced");
  return 0;
}

}  // namespace

int ServeMount(Node& node, const MountOptions& opts) {
  ImageFs fs(node, opts);
  fuse_lowlevel_ops ops = MakeOps();

  std::vector<std::string> argv_s = {"vshare", "-o", "fsname=vshare,subtype=vshare,allow_other,default_permissions"};
  if (opts.fuse_debug) argv_s.push_back("-d");
  std::vector<char*> argv;
  for (auto& s : argv_s) argv.push_back(s.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());

  fuse_session* se = fuse_session_new(&args, &ops, sizeof ops, &fs);
  fuse_opt_free_args(&args);  // libfuse may have added to them
  if (!se) {
    std::fprintf(stderr, "vshare mount: cannot create a FUSE session\n");
    return 1;
  }
  if (fuse_session_mount(se, opts.mountpoint.c_str()) != 0) {
    std::fprintf(stderr, "vshare mount: cannot mount on %s (is /dev/fuse available, and are you root?)\n",
                 opts.mountpoint.c_str());
    fuse_session_destroy(se);
    return 1;
  }
  if (fuse_set_signal_handlers(se) != 0) {
    std::fprintf(stderr, "vshare mount: cannot install signal handlers\n");
    fuse_session_unmount(se);
    fuse_session_destroy(se);
    return 1;
  }
  // Threads start after the fork (fork keeps only the calling thread); the
  // caller's process reports start-up errors, such as an unreachable parent.
  auto start = [&]() -> Status {
    if (!opts.foreground && opts.log_file.empty()) SetLogSink(LogSink::kSyslog);
    // Writeback of a loop device over this file needs this daemon; keep our
    // threads from waiting on that same writeback. Threads inherit it, so
    // it is set before the first one (the node's I/O thread) starts.
    if (prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) != 0)
      LogWarning(std::string("PR_SET_IO_FLUSHER unavailable (") + std::strerror(errno) +
                 "; it needs CAP_SYS_RESOURCE): a loop device over this mount may stall under memory pressure");
    if (opts.page_dropper) opts.page_dropper->Attach(se);
    return opts.start ? opts.start() : Status::Ok();
  };
  bool started;
  if (opts.foreground) {
    Status st = start();
    if (!st.ok()) std::fprintf(stderr, "vshare mount: %s\n", st.message().c_str());
    started = st.ok();
  } else {
    started = Daemonize("mount", start);
  }
  if (!started) {
    if (opts.page_dropper) opts.page_dropper->Detach();
    LogError("start-up failed; unmounting " + opts.mountpoint);
    fuse_remove_signal_handlers(se);
    fuse_session_unmount(se);
    fuse_session_destroy(se);
    return 1;
  }

  std::string names;
  for (const auto& v : node.volumes())
    names += (names.empty() ? "" : ", ") + v->name() + ".img (" + std::to_string(v->size()) + " bytes)";
  LogInfo("mounted " + opts.mountpoint + " as " + node.role() + ": " + names);

  int rc;
  {
    Flusher flusher(node, opts.flush_interval_s);
    fuse_loop_config* cfg = fuse_loop_cfg_create();
    fuse_loop_cfg_set_max_threads(cfg, opts.max_threads);
    fuse_loop_cfg_set_clone_fd(cfg, 0);
    rc = fuse_session_loop_mt(se, cfg);
    fuse_loop_cfg_destroy(cfg);
    flusher.Stop();
  }
  // libfuse reports the signal that ended the loop as a positive number.
  if (rc == 0) LogInfo("unmounted " + opts.mountpoint);
  else if (rc > 0) LogInfo("signal " + std::to_string(rc) + " received: shutting down " + opts.mountpoint);
  else LogError("FUSE loop failed (" + std::string(std::strerror(-rc)) + "): shutting down " + opts.mountpoint);
  int flush_rc = FinalFlush(node);
  if (opts.page_dropper) opts.page_dropper->Detach();  // before the session goes
  fuse_remove_signal_handlers(se);
  fuse_session_unmount(se);
  fuse_session_destroy(se);
  LogInfo("stopped");
  return flush_rc;
}

}  // namespace vshare
