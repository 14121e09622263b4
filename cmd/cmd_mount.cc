// vshare mount MOUNTPOINT --export NAME=IMAGE [--export ...] [options]
#include <stdlib.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <random>
#include <set>

#include "cmd/cli.h"
#include "core/file_store.h"
#include "core/image_meta.h"
#include "core/log.h"
#include "core/node.h"
#include "core/size.h"
#include "core/replica.h"
#include "core/volume.h"
#include "fuse/image_fs.h"
#include "net/tree_node.h"

namespace po = boost::program_options;

namespace vshare::cli {

namespace {

// Undoes the octal escapes (\040 for space, ...) of /proc/self/mountinfo.
std::string Unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      out.push_back(static_cast<char>(std::stoi(s.substr(i + 1, 3), nullptr, 8)));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

bool IsMountPoint(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    // Fields: id parent major:minor root mountpoint ...
    std::istringstream fields(line);
    std::string id, parent, devno, root, mp;
    if (fields >> id >> parent >> devno >> root >> mp && Unescape(mp) == path) return true;
  }
  return false;
}

// Opens the stats file, which needs an answer from the daemon (the kernel
// may answer lookups from its caches). False with errno set when it fails.
bool NodeAnswers(const std::string& mp) {
  int fd = open((mp + "/.vshare/stats").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  close(fd);
  return true;
}

std::string RealPath(const std::string& p, int* err) {
  char* r = realpath(p.c_str(), nullptr);
  if (!r) {
    *err = errno;
    return "";
  }
  std::string s(r);
  free(r);
  return s;
}

struct Export {
  std::string name;
  std::string path;  // absolute
};

}  // namespace

int Mount(const Args& args) {
  const std::string sub = "mount";
  CommandLine cl(sub, "usage: vshare mount MOUNTPOINT --export NAME=IMAGE [options]");
  cl.Positional("mountpoint", "directory to mount on");
  cl.Options()
      ("export,e", po::value<std::vector<std::string>>()->composing(), "NAME=IMAGE: serve IMAGE as MOUNTPOINT/NAME.img (repeatable); makes this node the root")
      ("parent,p", po::value<std::vector<std::string>>()->composing(), "HOST:PORT of the parent node: join the tree below it (repeat it for places to go when the parent fails)")
      ("volume", po::value<std::string>(), "with --parent: the volume to join, shown as MOUNTPOINT/NAME.img")
      ("listen,l", po::value<std::string>(), "HOST:PORT to serve children on (port 0 picks one; see stats)")
      ("io-timeout", po::value<double>()->default_value(30), "seconds any wait on the network may take before the I/O fails with EIO")
      ("write-mode", po::value<std::string>()->default_value("async"), "async: a write completes here and goes up on flush; semi-sync: once the parent holds it too; sync: once the root has it on disk")
      ("peer", po::value<std::string>(), "a root with --listen: HOST:PORT of the other root of the same image; the two take turns being active (see --standby)")
      ("standby", "with --peer: start as the standby root, serving nothing until the active root has been silent for longer than its lease")
      ("shared-writers", "write-opens of the image take the writer lease shared: several hosts may write at once (only for cluster file systems and O_DIRECT applications; every writer must say so)")
      ("cache-size", po::value<std::string>()->default_value("128M"), "memory for the block cache, shared among the volumes")
      ("cache-ways", po::value<unsigned>()->default_value(8), "associativity of the cache (blocks per set)")
      ("cache-hash", po::value<std::string>()->default_value("modulo"), "how blocks map to sets: modulo or mix")
      ("readahead", po::value<std::string>()->default_value("8M"), "most a sequential reader is read ahead of (0: no read-ahead)")
      ("kernel-cache", "keep the image's pages in the kernel's page cache too (coherent: dropped before they go stale); the block size must be the page size")
      ("flush-interval", po::value<double>()->default_value(5.0), "seconds between background write-backs (0: only on fsync, flush and unmount)")
      ("threads", po::value<unsigned>()->default_value(16), "maximum FUSE worker threads")
      ("max-background", po::value<unsigned>()->default_value(64), "asynchronous requests (libaio, read-ahead) the kernel keeps in flight to vshare at once")
      ("foreground,f", "stay in the foreground and log to stderr")
      ("log-file", po::value<std::string>(), "append log lines to this file (default: stderr in the foreground, syslog otherwise)")
      ("verbose,v", "log debug lines too")
      ("fuse-debug", "trace every FUSE request to stderr (implies --foreground)");
  AddLeaseOptions(cl);
  int rc;
  if (!cl.Parse(args, &rc)) return rc;
  const bool child = cl.Has("parent");
  ReplicaConfig lease_cfg;
  if (std::string why; !ApplyLeaseOptions(cl, &lease_cfg, &why)) return UsageError(sub, why);
  if (child && cl.Has("export")) return UsageError(sub, "--export (a root) and --parent (a child) exclude each other");
  if (child && !cl.Has("volume")) return UsageError(sub, "--parent needs --volume NAME");
  if (!child && cl.Has("volume")) return UsageError(sub, "--volume goes with --parent");
  if (!child && !cl.Has("export"))
    return UsageError(sub, "nothing to serve: give --export NAME=IMAGE (a root) or --parent HOST:PORT --volume NAME (a child)");
  if (!child && cl.Has("listen") && cl.Get<std::vector<std::string>>("export").size() != 1)
    return UsageError(sub, "--listen serves one volume per node for now: give a single --export");
  if (cl.Has("peer") && (child || !cl.Has("listen")))
    return UsageError(sub, "--peer is for a root that serves children: give --export and --listen");
  if (cl.Has("standby") && !cl.Has("peer")) return UsageError(sub, "--standby needs --peer HOST:PORT (the active root)");
  const std::string write_mode = cl.Get<std::string>("write-mode");
  if (write_mode != "sync" && write_mode != "semi-sync" && write_mode != "async")
    return UsageError(sub, "--write-mode must be sync, semi-sync or async, not '" + write_mode + "'");
  if (write_mode == "semi-sync" && !child)
    return UsageError(sub, "--write-mode semi-sync needs a parent to hold the second copy (give --parent)");
  const bool sync_writes = write_mode == "sync";
  const auto volume_mode = sync_writes                ? Volume::WriteMode::kSync
                           : write_mode == "semi-sync" ? Volume::WriteMode::kSemiSync
                                                       : Volume::WriteMode::kAsync;
  const double io_timeout = cl.Get<double>("io-timeout");
  if (!(io_timeout >= 0.1) || io_timeout > 3600) return UsageError(sub, "--io-timeout must be from 0.1 to 3600 seconds");
  if (child && !ValidVolumeName(cl.Get<std::string>("volume")))
    return UsageError(sub, "--volume '" + cl.Get<std::string>("volume") + "': volume name must be 1-64 of A-Z a-z 0-9 . _ - and not start with '.' or '-'");

  // The mountpoint: an existing directory with nothing mounted on it.
  int err = 0;
  const std::string given_mp = cl.Get<std::string>("mountpoint");
  const std::string mp = RealPath(given_mp, &err);
  if (mp.empty() && err == ENOTCONN)
    return Fail(sub, "mountpoint " + given_mp + " holds the mount of a node that died; run 'vshare umount " +
                         given_mp + "' first");
  if (mp.empty()) return Fail(sub, "mountpoint " + given_mp + ": " + std::strerror(err));
  struct stat st;
  if (stat(mp.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return Fail(sub, "mountpoint " + given_mp + " is not a directory");
  if (IsMountPoint(mp) && !NodeAnswers(mp) && errno == ENOTCONN)
    return Fail(sub, "mountpoint " + given_mp + " holds the mount of a node that died; run 'vshare umount " +
                         given_mp + "' first");
  if (IsMountPoint(mp)) return Fail(sub, "mountpoint " + mp + " is already mounted (vshare umount " + mp + " first)");

  // Exports: unique names, unique files, all openable.
  std::vector<Export> exports;
  std::set<std::pair<dev_t, ino_t>> files;
  const std::vector<std::string> export_specs = child ? std::vector<std::string>{} : cl.Get<std::vector<std::string>>("export");
  for (const std::string& spec : export_specs) {
    size_t eq = spec.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size())
      return UsageError(sub, "--export '" + spec + "': expected NAME=IMAGE");
    Export e{spec.substr(0, eq), spec.substr(eq + 1)};
    if (!ValidVolumeName(e.name))
      return UsageError(sub, "--export '" + spec + "': volume name must be 1-64 of A-Z a-z 0-9 . _ - and not start with '.' or '-'");
    for (const Export& other : exports)
      if (other.name == e.name) return UsageError(sub, "--export: volume name '" + e.name + "' is given twice");
    std::string abs = RealPath(e.path, &err);
    if (abs.empty()) return Fail(sub, "image " + e.path + ": " + std::strerror(err));
    if (stat(abs.c_str(), &st) != 0) return Fail(sub, "image " + e.path + ": " + std::strerror(errno));
    if (!files.insert({st.st_dev, st.st_ino}).second)
      return UsageError(sub, "--export: image " + abs + " is exported twice; two caches over one file would disagree");
    if (abs == mp || abs.rfind(mp + "/", 0) == 0)
      return UsageError(sub, "--export: image " + abs + " lies inside the mountpoint");
    e.path = abs;
    exports.push_back(e);
  }

  // The cache budget is for the whole node, split evenly among the volumes.
  uint64_t cache_bytes = 0;
  Status s = ParseSize(cl.Get<std::string>("cache-size"), &cache_bytes);
  if (!s.ok()) return UsageError(sub, "--cache-size: " + s.message());
  // The cache is allocated and touched at start-up: more than the machine
  // has would end in the OOM killer rather than an error message.
  const uint64_t ram = static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  if (ram > 0 && cache_bytes > ram / 10 * 9)
    return UsageError(sub, "--cache-size " + FormatSize(cache_bytes) + " does not fit in this machine's memory (" +
                               FormatSize(ram) + ")");
  CacheHash hash;
  s = ParseCacheHash(cl.Get<std::string>("cache-hash"), &hash);
  if (!s.ok()) return UsageError(sub, "--cache-hash: " + s.message());
  const unsigned ways = cl.Get<unsigned>("cache-ways");
  if (ways == 0 || ways > 1024) return UsageError(sub, "--cache-ways must be from 1 to 1024");
  const double flush_interval = cl.Get<double>("flush-interval");
  if (!(flush_interval >= 0) || flush_interval > 86400) return UsageError(sub, "--flush-interval must be from 0 to 86400 seconds");
  const unsigned threads = cl.Get<unsigned>("threads");
  if (threads == 0 || threads > 256) return UsageError(sub, "--threads must be from 1 to 256");
  const unsigned background = cl.Get<unsigned>("max-background");
  if (background == 0 || background > 65535) return UsageError(sub, "--max-background must be from 1 to 65535");

  MountOptions opts;
  opts.mountpoint = mp;
  opts.fuse_debug = cl.Has("fuse-debug");
  opts.foreground = cl.Has("foreground") || opts.fuse_debug;
  opts.flush_interval_s = flush_interval;
  opts.max_threads = threads;
  opts.max_background = background;
  opts.kernel_cache = cl.Has("kernel-cache");
  SetLogVerbose(cl.Has("verbose"));
  if (cl.Has("log-file")) {
    std::string given = cl.Get<std::string>("log-file");
    if (given.empty()) return UsageError(sub, "--log-file needs a path");
    // The daemon runs from /, so keep the log where the user meant it.
    std::string abs = given.front() == '/' ? given : RealPath(".", &err) + "/" + given;
    if (!SetLogSink(LogSink::kFile, abs)) return Fail(sub, "cannot open log file " + given + ": " + std::strerror(errno));
    opts.log_file = abs;
  }

  uint64_t readahead = 0;
  if (cl.Get<std::string>("readahead") != "0") {
    s = ParseSize(cl.Get<std::string>("readahead"), &readahead);
    if (!s.ok()) return UsageError(sub, "--readahead: " + s.message() + " (or 0: none)");
  }

  net::TreeNodeOptions tree_opts;
  if (cl.Has("listen")) tree_opts.listen = cl.Get<std::string>("listen");
  if (child) {
    const auto parents = cl.Get<std::vector<std::string>>("parent");
    tree_opts.parent = parents.front();
    tree_opts.fallback_parents.assign(parents.begin() + 1, parents.end());
  }
  tree_opts.io_timeout = std::chrono::milliseconds(static_cast<int64_t>(io_timeout * 1000));
  if (cl.Has("peer")) {
    tree_opts.peer = cl.Get<std::string>("peer");
    tree_opts.standby = cl.Has("standby");
  }
  Node node(!child ? "root" : cl.Has("listen") ? "proxy" : "leaf");
  node.set_write_mode(write_mode);
  const bool shared_writers = cl.Has("shared-writers");
  // What a child tells its parent in CONNECT.
  const uint32_t join_flags = (sync_writes                 ? connect_flags::kSyncWrite
                               : write_mode == "semi-sync" ? 0u
                                                           : connect_flags::kAsyncWrite) |
                              (shared_writers ? connect_flags::kSharedWriters : 0u);
  // Every volume, whatever the node's role, is a Volume over a tree node:
  // a root's without a parent (and without a listener unless --listen).
  // The cache budget is for the whole node, split evenly among the volumes.
  const size_t volume_count = child ? 1 : exports.size();
  std::vector<std::unique_ptr<net::TreeNode>> trees;
  auto base_config = [&](const std::string& name) {
    ReplicaConfig cfg = NewReplicaConfig(name);
    cfg.hb_ttl_ms = lease_cfg.hb_ttl_ms;
    cfg.heartbeat_ms = lease_cfg.heartbeat_ms;
    cfg.cache_bytes = cache_bytes / volume_count;
    cfg.cache_ways = ways;
    cfg.cache_hash = hash;
    cfg.kernel_cache = opts.kernel_cache;
    return cfg;
  };
  if (child) {
    ReplicaConfig cfg = base_config(cl.Get<std::string>("volume"));
    cfg.connect_flags = join_flags;
    trees.push_back(std::make_unique<net::TreeNode>(tree_opts, cfg));
  }
  for (const Export& e : exports) {
    uint32_t bs = kDefaultBlockSize;
    s = ReadImageBlockSize(e.path, &bs);
    if (!s.ok()) return Fail(sub, s.message());
    std::unique_ptr<FileStore> store;
    s = FileStore::Open(e.path, bs, /*read_only=*/false, &store);
    if (!s.ok()) return Fail(sub, s.message());
    CacheGeometry geo;
    s = CacheGeometry::ForBytes(cache_bytes / exports.size(), bs, ways, &geo);
    if (!s.ok())
      return UsageError(sub, "--cache-size " + cl.Get<std::string>("cache-size") + " is too small for " +
                                 std::to_string(exports.size()) + " volume(s): " + s.message());
    ReplicaConfig cfg = base_config(e.name);
    cfg.volume_size = store->size();
    cfg.block_size = bs;
    // The other root reads the image when it takes over: it must not lag
    // what this one acknowledged.
    cfg.write_through = !tree_opts.peer.empty();
    trees.push_back(std::make_unique<net::TreeNode>(tree_opts, cfg, std::move(store)));
  }
  // Volumes are made once their tree nodes have started (a child learns the
  // volume's size and block size by joining), after the fork and before
  // the FUSE loop serves anything.
  // --kernel-cache: the kernel's pages are dropped on threads of their own.
  // (Declared after the trees, so that it stops before they go.)
  PageDropper dropper;
  if (opts.kernel_cache) {
    opts.page_dropper = &dropper;
    for (size_t i = 0; i < trees.size(); ++i) {
      net::TreeNode* tn = trees[i].get();
      const fuse_ino_t ino = kFirstVolumeIno + i;
      tn->SetPageDropper([&dropper, tn, ino](const PageDrop& d, std::function<void(bool)> report) {
        dropper.Drop(ino, tn->table()->block_size(), d, std::move(report));
      });
    }
  }
  const bool kernel_cache = opts.kernel_cache;
  opts.start = [&node, &trees, tree_opts, volume_mode, shared_writers, readahead, kernel_cache]() -> Status {
    for (auto& tree : trees) {
      Status started = tree->Start();
      if (!started.ok()) return started;
      // One page per block: a drop then never waits on a neighbour's page
      // (core/kernel_pages.cc).
      const long page = sysconf(_SC_PAGESIZE);
      if (kernel_cache && tree->table()->block_size() != static_cast<uint64_t>(page))
        return Status::InvalidArgument("--kernel-cache needs the block size to be the page size (" +
                                       std::to_string(page) + " bytes); " + tree->volume_name() + " has blocks of " +
                                       std::to_string(tree->table()->block_size()));
      auto volume = std::make_unique<Volume>(tree->volume_name(), tree->table(), tree.get());
      volume->set_write_mode(volume_mode);
      volume->set_shared_writers(shared_writers);
      volume->set_readahead_max(readahead);
      volume->set_kernel_cache(kernel_cache);
      const std::string root = tree_opts.peer.empty() ? "root"
                               : tree_opts.standby ? "standby root (peer " + tree_opts.peer + ")"
                                                   : "root, active once its peer " + tree_opts.peer + " agrees";
      LogInfo("volume " + tree->volume_name() + ": " + (tree_opts.parent.empty() ? root : "joined below " + tree_opts.parent) +
              (tree_opts.listen.empty() ? "" : ", serving children on port " + std::to_string(tree->port())));
      node.AddVolume(std::move(volume));
    }
    return Status::Ok();
  };
  if (child || cl.Has("listen")) {
    net::TreeNode* tn = trees.front().get();
    node.SetTreeStats([tn] { return tn->status(); }, [tn] { tn->ResetTraffic(); });
    if (child) node.SetReparent([tn](const std::string& address) { return tn->Reparent(address); });
  }
  // (The volumes, in `node`, are destroyed after the trees, but never used
  // once ServeMount returns.)
  int mount_rc = ServeMount(node, opts);
  for (auto& tree : trees) tree->Stop();
  return mount_rc;

}

}  // namespace vshare::cli
