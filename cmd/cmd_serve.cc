// vshare serve --parent HOST:PORT --volume NAME --listen HOST:PORT [options]
// A proxy without a mount: it joins the tree below its parent and serves
// children, keeping copies of what passes through.
#include <signal.h>

#include <iostream>

#include "cmd/cli.h"
#include "core/daemon.h"
#include "core/size.h"
#include "core/log.h"
#include "net/tree_node.h"

namespace po = boost::program_options;

namespace vshare::cli {

int Serve(const Args& args) {
  const std::string sub = "serve";
  CommandLine cl(sub, "usage: vshare serve --parent HOST:PORT --volume NAME --listen HOST:PORT [options]");
  cl.Options()
      ("parent,p", po::value<std::vector<std::string>>()->composing(), "HOST:PORT of the parent node (repeat it for places to go when the parent fails)")
      ("volume", po::value<std::string>(), "the volume to serve onward")
      ("listen,l", po::value<std::string>(), "HOST:PORT to serve children on (port 0 picks one)")
      ("io-timeout", po::value<double>()->default_value(30), "seconds any wait on the network may take")
      ("flush-interval", po::value<double>()->default_value(5.0), "seconds between sending dirty blocks (recalled from children) to the parent")
      ("cache-size", po::value<std::string>()->default_value("128M"), "memory for the copies this proxy keeps (what its children hold must fit in it)")
      ("cache-ways", po::value<unsigned>()->default_value(8), "associativity of the cache (blocks per set)")
      ("foreground,f", "stay in the foreground and log to stderr")
      ("log-file", po::value<std::string>(), "append log lines to this file (default: stderr in the foreground, syslog otherwise)")
      ("port-file", po::value<std::string>(), "write the listening port here once serving (useful with port 0)");
  AddLeaseOptions(cl);
  int rc;
  if (!cl.Parse(args, &rc)) return rc;
  for (const char* needed : {"parent", "volume", "listen"})
    if (!cl.Has(needed)) return UsageError(sub, std::string("missing --") + needed);
  if (!ValidVolumeName(cl.Get<std::string>("volume")))
    return UsageError(sub, "--volume '" + cl.Get<std::string>("volume") +
                               "': volume name must be 1-64 of A-Z a-z 0-9 . _ - and not start with '.' or '-'");
  const double io_timeout = cl.Get<double>("io-timeout");
  if (!(cl.Get<double>("flush-interval") >= 0) || cl.Get<double>("flush-interval") > 86400)
    return UsageError(sub, "--flush-interval must be from 0 to 86400 seconds");
  if (!(io_timeout >= 0.1) || io_timeout > 3600) return UsageError(sub, "--io-timeout must be from 0.1 to 3600 seconds");
  if (cl.Has("log-file")) {
    const std::string path = AbsolutePath(cl.Get<std::string>("log-file"));
    if (path.empty() || !SetLogSink(LogSink::kFile, path)) return Fail(sub, "cannot open log file '" + path + "'");
  }

  net::TreeNodeOptions opts;
  const auto parents = cl.Get<std::vector<std::string>>("parent");
  opts.parent = parents.front();
  opts.fallback_parents.assign(parents.begin() + 1, parents.end());
  opts.listen = cl.Get<std::string>("listen");
  opts.io_timeout = std::chrono::milliseconds(static_cast<int64_t>(io_timeout * 1000));
  ReplicaConfig cfg = NewReplicaConfig(cl.Get<std::string>("volume"));
  if (std::string why; !ApplyLeaseOptions(cl, &cfg, &why)) return UsageError(sub, why);
  if (Status st = ParseSize(cl.Get<std::string>("cache-size"), &cfg.cache_bytes); !st.ok())
    return UsageError(sub, "--cache-size: " + st.message());
  cfg.cache_ways = cl.Get<unsigned>("cache-ways");
  if (cfg.cache_ways == 0 || cfg.cache_ways > 1024) return UsageError(sub, "--cache-ways must be from 1 to 1024");
  net::TreeNode node(opts, cfg);

  // Termination signals are taken by sigwait below, in this thread only.
  sigset_t stop;
  sigemptyset(&stop);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGQUIT}) sigaddset(&stop, s);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  // Made absolute now: the background process runs in /.
  const std::string port_file = cl.Has("port-file") ? AbsolutePath(cl.Get<std::string>("port-file")) : "";
  auto start = [&]() -> Status {
    if (!cl.Has("foreground") && !cl.Has("log-file")) SetLogSink(LogSink::kSyslog);
    Status st = node.Start();
    if (!st.ok()) return st;
    if (!port_file.empty()) {
      FILE* f = std::fopen(port_file.c_str(), "we");
      if (!f) return Status::FromErrno(errno, "cannot write " + port_file);
      std::fprintf(f, "%u\n", node.port());
      std::fclose(f);
    }
    LogInfo("serving volume " + cfg.volume_name + " below " + opts.parent + " on port " + std::to_string(node.port()));
    return st;
  };
  if (cl.Has("foreground")) {
    Status st = start();
    if (!st.ok()) return Fail(sub, st.message());
  } else if (!Daemonize(sub, start)) {
    return 1;
  }
  // Data that recalls moved here is dirty here: send it up every
  // --flush-interval, and once more before stopping.
  const double interval = cl.Get<double>("flush-interval");
  int sig = 0;
  for (;;) {
    timespec wait{static_cast<time_t>(interval), static_cast<long>((interval - static_cast<time_t>(interval)) * 1e9)};
    sig = interval > 0 ? sigtimedwait(&stop, nullptr, &wait) : sigwaitinfo(&stop, nullptr);
    if (sig > 0) break;
    if (!node.table() || node.table()->DirtyCount() == 0) continue;
    Status st = node.Sync();
    if (!st.ok()) LogWarning("periodic flush to the parent failed: " + st.ToString());
  }
  // Dirty data (recalled from children) goes up before stopping; with none,
  // there is nothing to wait for, even when the parent is gone.
  const size_t dirty = node.table() ? node.table()->DirtyCount() : 0;
  LogInfo("signal " + std::to_string(sig) + " received: " +
          (dirty ? "flushing " + std::to_string(dirty) + " dirty blocks, then stopping" : std::string("stopping")));
  int rc_stop = 0;
  if (dirty > 0) {
    if (Status st = node.Sync(); !st.ok()) {
      const size_t left = node.table()->DirtyCount();
      LogError("final flush to the parent failed: " + std::to_string(left) + " dirty blocks were not written (" +
               st.ToString() + ")");
      rc_stop = left > 0 ? 1 : 0;
    }
  }
  node.Stop();
  LogInfo("stopped");
  return rc_stop;
}

}  // namespace vshare::cli
