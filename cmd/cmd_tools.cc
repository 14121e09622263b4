// The commands that talk to a mounted node through its control files:
// vshare stats, vshare ctl, vshare umount. Also the shared CLI plumbing.
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "cmd/cli.h"
#include "core/size.h"

namespace po = boost::program_options;
using nlohmann::json;

namespace vshare::cli {

bool ValidVolumeName(const std::string& name) {
  if (name.empty() || name.size() > 64 || name[0] == '.' || name[0] == '-') return false;
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') return false;
  return true;
}

ReplicaConfig NewReplicaConfig(const std::string& name) {
  std::random_device rd;
  ReplicaConfig cfg;
  cfg.volume_name = name;
  cfg.volume_id = rd() | 1;  // never 0
  cfg.self[10] = cfg.self[11] = 0xff;
  for (int i = 12; i < 16; ++i) cfg.self[i] = static_cast<uint8_t>(rd());
  return cfg;
}

void AddLeaseOptions(CommandLine& cl) {
  cl.Options()
      ("lease", po::value<double>()->default_value(10), "seconds a node's copies stay usable without word from its parent (the HB_TTL a root gives; below it, a cap)")
      ("heartbeat", po::value<double>(), "seconds between HEARTBEATs to the parent (default: a quarter of the lease)");
}

bool ApplyLeaseOptions(const CommandLine& cl, ReplicaConfig* cfg, std::string* why) {
  const double lease = cl.Get<double>("lease");
  if (!(lease >= 0.5) || lease > 3600) {
    *why = "--lease must be from 0.5 to 3600 seconds";
    return false;
  }
  cfg->hb_ttl_ms = static_cast<uint32_t>(lease * 1000);
  if (cl.Has("heartbeat")) {
    const double hb = cl.Get<double>("heartbeat");
    if (!(hb >= 0.05) || hb > lease / 2) {
      *why = "--heartbeat must be from 0.05 seconds to half the lease";
      return false;
    }
    cfg->heartbeat_ms = static_cast<uint32_t>(hb * 1000);
  }
  return true;
}

std::string AbsolutePath(const std::string& path) {
  if (path.empty() || path.front() == '/') return path;
  char cwd[4096];
  if (!getcwd(cwd, sizeof cwd)) return path;
  return std::string(cwd) + "/" + path;
}

int Fail(const std::string& sub, const std::string& why) {
  std::cerr << "vshare " << sub << ": " << why << "\n";
  return 1;
}

int UsageError(const std::string& sub, const std::string& why) {
  std::cerr << "vshare " << sub << ": " << why << " (see 'vshare " << sub << " --help')\n";
  return 2;
}

CommandLine::CommandLine(std::string sub, const std::string& usage) : sub_(std::move(sub)), desc_(usage) {
  desc_.add_options()("help,h", "show this help");
}

CommandLine& CommandLine::Positional(const std::string& name, const std::string& what) {
  desc_.add_options()(name.c_str(), po::value<std::string>(), what.c_str());
  pos_.add(name.c_str(), 1);
  required_.push_back(name);
  return *this;
}

bool CommandLine::Parse(const Args& args, int* exit_code) {
  try {
    po::store(po::command_line_parser(args).options(desc_).positional(pos_).run(), vm_);
    po::notify(vm_);
  } catch (const po::error& e) {
    *exit_code = UsageError(sub_, e.what());
    return false;
  }
  if (Has("help")) {
    std::cout << desc_ << "\n";
    *exit_code = 0;
    return false;
  }
  for (const std::string& name : required_) {
    if (!Has(name)) {
      std::string upper;
      for (char c : name) upper.push_back(c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
      *exit_code = UsageError(sub_, "missing " + upper);
      return false;
    }
  }
  return true;
}

namespace {

// True while `pid` runs. A zombie has finished: nobody may reap a daemon
// whose parent is a container's init.
bool Running(pid_t pid) {
  if (kill(pid, 0) != 0) return false;
  // With read(2), not a stream: reading the file of a process that exits
  // meanwhile fails with ESRCH, which libstdc++'s filebuf throws.
  std::string all;
  const int fd = open(("/proc/" + std::to_string(pid) + "/stat").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return kill(pid, 0) == 0;
  char buf[512];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) all.append(buf, static_cast<size_t>(n));
  close(fd);
  if (n < 0) return kill(pid, 0) == 0;  // it went while we read
  size_t close_paren = all.rfind(')');
  return close_paren == std::string::npos || close_paren + 2 >= all.size() || all[close_paren + 2] != 'Z';
}

// Unmounts through the setuid helper, for users who may not call umount2.
// Returns 0, or -1 with errno set (EBUSY when the helper says busy).
int FusermountUnmount(const std::string& mp) {
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) return -1;
  pid_t child = fork();
  if (child < 0) return -1;
  if (child == 0) {
    dup2(pipefd[1], STDERR_FILENO);
    execlp("fusermount3", "fusermount3", "-u", mp.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(pipefd[1]);
  std::string out;
  char buf[256];
  ssize_t n;
  while ((n = read(pipefd[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(pipefd[0]);
  int status = 0;
  waitpid(child, &status, 0);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
  errno = out.find("busy") != std::string::npos ? EBUSY : EPERM;
  return -1;
}

std::string StatsPath(const std::string& mp) { return mp + "/.vshare/stats"; }
std::string ControlPath(const std::string& mp) { return mp + "/.vshare/control"; }

// Reads and parses the node's stats; false (with *why) when MP is not a
// mounted vshare node.
bool ReadStats(const std::string& mp, json* out, std::string* why) {
  std::ifstream in(StatsPath(mp));
  if (!in) {
    if (errno == ENOTCONN)
      *why = "the node serving " + mp + " has died (transport endpoint is not connected); 'vshare umount " + mp +
             "' removes the dead mount";
    else
      *why = mp + " is not a mounted vshare node (no " + StatsPath(mp) + ")";
    return false;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  *out = json::parse(ss.str(), nullptr, false);
  if (out->is_discarded() || !out->is_object()) {
    *why = StatsPath(mp) + " is not valid JSON";
    return false;
  }
  return true;
}

std::string Num(const json& j) {
  if (j.is_number_float()) {
    std::ostringstream o;
    o << std::fixed << std::setprecision(1) << j.get<double>();
    return o.str();
  }
  return j.dump();
}

// "valid, 8.2 s left, renewed 1.3 s ago".
std::string LeaseLine(const json& t) {
  if (!t.contains("lease")) return "unknown";
  const json& l = t["lease"];
  std::ostringstream o;
  o << std::fixed << std::setprecision(1);
  o << (l.value("valid", false) ? "valid, " : "LAPSED (nothing cached is used until it is renewed), ")
    << l.value("ms_left", 0) / 1000.0 << " s left";
  const int64_t since = l.value("ms_since_renewal", -1);
  if (since >= 0) o << ", renewed " << since / 1000.0 << " s ago";
  return o.str();
}

// "0 frozen blocks, 0 failed children, 0 rejoins".
std::string FailureLine(const json& t) {
  auto n = [&t](const char* key) { return std::to_string(t.value(key, 0)); };
  return n("frozen_blocks") + " frozen blocks, " + n("failed_children") + " failed children, " + n("rejoins") +
         " rejoins (" + n("reparents") + " to another parent), " + n("recovered") + " blocks recovered, " +
         n("recovery_lost") + " lost, " + n("claims_served") + " claims taken from children, " + n("revalidated") +
         " copies revalidated by version";
}

// "GET 3, FLUSH 1", or "none".
std::string Counts(const json& by_kind) {
  std::string out;
  for (auto& [kind, n] : by_kind.items()) out += (out.empty() ? "" : ", ") + kind + " " + n.dump();
  return out.empty() ? "none" : out;
}

void PrintTraffic(const json& t) {
  std::cout << "  requests sent: " << Counts(t["sent"]) << "; served: " << Counts(t["served"]) << "\n"
            << "  invalidations: " << Num(t["invalidations_sent"]) << " sent, " << Num(t["invalidations_received"])
            << " received; data: " << FormatSize(t["bytes_from_parent"]) << " from the parent, "
            << FormatSize(t["bytes_to_parent"]) << " to it, " << FormatSize(t["bytes_to_children"])
            << " to children, " << FormatSize(t["bytes_from_children"]) << " from them\n"
            << "  errors sent: " << Counts(t["errors_sent"]) << "; received: " << Counts(t["errors_received"]) << "\n";
}

void PrintTable(const json& s) {
  const json& n = s["node"];
  std::cout << "node: " << n.value("role", "?") << ", pid " << n.value("pid", 0) << ", up "
            << Num(n["uptime_s"]) << " s, mounted on " << n.value("mountpoint", "?") << "\n";
  if (s.contains("tree") && s["tree"].is_object()) {
    const json& t = s["tree"];
    std::string parent = t.value("parent", "");
    std::cout << "tree: " << (parent.empty() ? "root" : "below " + parent);
    if (t.value("listen_port", 0) > 0) std::cout << ", serving children on port " << t.value("listen_port", 0);
    std::cout << ", " << t.value("children", 0) << " children";
    if (t.contains("root_peer")) std::cout << "; " << t["root_peer"].value("role", "?") << " (peer root " << t["root_peer"].value("peer", "?") << ")";
    std::cout << "\n";
    if (!parent.empty()) std::cout << "  lease: " << LeaseLine(t) << "\n";
    std::cout << "  failures: " << FailureLine(t) << "\n";
    if (t.contains("traffic")) PrintTraffic(t["traffic"]);
  }
  std::string err = s.value("last_error", "");
  std::cout << "last error: " << (err.empty() ? "none" : err) << "\n\n";

  auto row = [](std::initializer_list<std::string> cols, std::initializer_list<int> widths) {
    auto w = widths.begin();
    for (const std::string& c : cols) std::cout << std::left << std::setw(*w++) << c;
    std::cout << "\n";
  };
  std::initializer_list<int> vw = {12, 10, 7, 10, 10, 11, 11, 8, 12, 12};
  row({"volume", "size", "block", "reads", "writes", "read", "written", "dirty", "read avg", "write avg"}, vw);
  for (auto& [name, v] : s["volumes"].items()) {
    row({name, FormatSize(v["size"]), Num(v["block_size"]), Num(v["reads"]), Num(v["writes"]),
         FormatSize(v["bytes_read"]), FormatSize(v["bytes_written"]), Num(v["dirty_blocks"]),
         Num(v["read_latency"]["avg_us"]) + " us", Num(v["write_latency"]["avg_us"]) + " us"},
        vw);
  }
  std::cout << "\n";
  bool any_level = false;
  for (auto& [name, v] : s["volumes"].items()) any_level |= !v["cache"]["levels"].empty();
  if (!any_level) {
    std::cout << "cache: no block cache level on this node (copies it holds are kept in memory)\n";
    return;
  }
  std::initializer_list<int> cw = {12, 7, 8, 8, 6, 8, 16, 12, 12, 7, 10};
  row({"cache", "level", "medium", "sets", "ways", "hash", "used/capacity", "hits", "misses", "hit%", "evictions"}, cw);
  for (auto& [name, v] : s["volumes"].items()) {
    for (const json& l : v["cache"]["levels"]) {
      uint64_t hits = l["hits"], misses = l["misses"];
      std::ostringstream pct;
      pct << std::fixed << std::setprecision(1) << (hits + misses ? 100.0 * hits / (hits + misses) : 0.0);
      row({name, Num(l["level"]), l.value("medium", "?"), Num(l["sets"]), Num(l["ways"]), l.value("hash", "?"),
           Num(l["used_blocks"]) + "/" + Num(l["capacity_blocks"]), Num(l["hits"]), Num(l["misses"]), pct.str(),
           Num(l["evictions"])},
          cw);
    }
  }
}

// Sends one command to the control file. While it runs (a flush can take
// long), prints the dirty-block count every two seconds.
int SendControl(const std::string& sub, const std::string& mp, const std::string& command) {
  int fd = open(ControlPath(mp).c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Fail(sub, mp + " is not a mounted vshare node");
    return Fail(sub, "cannot open " + ControlPath(mp) + ": " + std::strerror(errno));
  }
  std::atomic<bool> done{false};
  std::thread progress([&] {
    auto next = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (!done) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (done || std::chrono::steady_clock::now() < next) continue;
      next += std::chrono::seconds(2);
      json s;
      std::string why;
      if (ReadStats(mp, &s, &why))
        std::cerr << "vshare " << sub << ": working, " << s["node"].value("dirty_blocks", 0) << " dirty blocks left\n";
    }
  });
  ssize_t n = write(fd, command.data(), command.size());
  int err = errno;
  done = true;
  progress.join();
  close(fd);
  if (n == static_cast<ssize_t>(command.size())) return 0;
  // The node records why it refused; show that rather than a bare errno.
  json s;
  std::string why;
  std::string reason = ReadStats(mp, &s, &why) ? s.value("last_error", "") : "";
  if (reason.empty()) reason = std::strerror(n < 0 ? err : EIO);
  return Fail(sub, reason);
}

}  // namespace

int Stats(const Args& args) {
  CommandLine cl("stats", "usage: vshare stats MOUNTPOINT [--json]");
  cl.Positional("mountpoint", "a mounted node");
  cl.Options()("json", "print the raw JSON document");
  int rc;
  if (!cl.Parse(args, &rc)) return rc;
  json s;
  std::string why;
  if (!ReadStats(cl.Get<std::string>("mountpoint"), &s, &why)) return Fail(cl.sub(), why);
  if (cl.Has("json")) std::cout << s.dump(2) << "\n";
  else PrintTable(s);
  return 0;
}

int Ctl(const Args& args) {
  CommandLine cl("ctl",
                 "usage: vshare ctl MOUNTPOINT COMMAND\n"
                 "COMMAND is flush, drop-cache, reset-stats, or a JSON object such as '{\"cmd\":\"flush\"}'\n"
                 "or '{\"cmd\":\"reparent\",\"parent\":\"HOST:PORT\"}'");
  cl.Positional("mountpoint", "a mounted node").Positional("command", "the command");
  int rc;
  if (!cl.Parse(args, &rc)) return rc;
  std::string cmd = cl.Get<std::string>("command");
  if (cmd.empty() || cmd.front() != '{') cmd = json{{"cmd", cmd}}.dump();
  return SendControl(cl.sub(), cl.Get<std::string>("mountpoint"), cmd);
}

int ShowStatus(const Args& args) {
  CommandLine cl("status", "usage: vshare status MOUNTPOINT");
  cl.Positional("mountpoint", "a mounted node");
  int rc;
  if (!cl.Parse(args, &rc)) return rc;
  const std::string mp = cl.Get<std::string>("mountpoint");
  json s;
  std::string why;
  if (!ReadStats(mp, &s, &why)) return Fail(cl.sub(), why);
  const json& n = s["node"];
  std::cout << mp << ": " << n.value("role", "?") << " node, pid " << n.value("pid", 0) << "\n";
  std::cout << "  volumes:  ";
  bool first = true;
  for (auto& [name, v] : s["volumes"].items()) {
    std::cout << (first ? "" : ", ") << name << ".img (" << FormatSize(v["size"]) << ")";
    first = false;
  }
  std::cout << "\n";
  if (!s.contains("tree") || !s["tree"].is_object()) {
    std::cout << "  tree:     none (a root serving only this host; --listen serves children)\n";
    return 0;
  }
  const json& t = s["tree"];
  const std::string parent = t.value("parent", "");
  std::cout << "  parent:   " << (parent.empty() ? "none (this is the root)" : parent) << "\n";
  if (!parent.empty()) {
    std::string up;
    if (t.contains("upstream"))
      for (const auto& a : t["upstream"]) up += (up.empty() ? "" : ", ") + a.get<std::string>();
    std::cout << "  fallback: " << (up.empty() ? std::string("none known (the parent is the root)") : up)
              << " (where it goes if the parent fails)\n";
    std::cout << "  lease:    " << LeaseLine(t) << "\n";
  }
  if (t.contains("root_peer")) {
    const json& r = t["root_peer"];
    const int64_t left = r.value("lease_ms_left", -1);
    std::cout << "  role:     " << r.value("role", "?") << " (peer root " << r.value("peer", "?") << ")";
    if (left >= 0) std::cout << ", root lease " << left / 1000.0 << " s left";
    std::cout << "\n";
  }
  std::cout << "  failures: " << FailureLine(t) << "\n";
  const int port = t.value("listen_port", 0);
  std::cout << "  serving:  " << (port > 0 ? "children on port " + std::to_string(port) : std::string("no children (no --listen)")) << "\n";
  const json& kids = t.contains("child_addresses") ? t["child_addresses"] : json::array();
  std::cout << "  children: " << kids.size();
  for (size_t i = 0; i < kids.size(); ++i) std::cout << (i == 0 ? " (connected from " : ", ") << kids[i].get<std::string>();
  std::cout << (kids.empty() ? "" : ")") << "\n";
  const std::string lease = t.value("writer_lease", "none");
  std::cout << "  writer:   "
            << (lease == "none" ? std::string("none (the image is not open for writing here)")
                                : lease + " (the image is open for writing here)")
            << "\n";
  return 0;
}

int Umount(const Args& args) {
  const std::string sub = "umount";
  CommandLine cl(sub, "usage: vshare umount MOUNTPOINT [--timeout SECONDS]");
  cl.Positional("mountpoint", "a mounted node");
  cl.Options()("timeout", po::value<double>()->default_value(120), "seconds to wait for the node to finish and exit");
  int rc;
  if (!cl.Parse(args, &rc)) return rc;
  const std::string mp = cl.Get<std::string>("mountpoint");
  const double timeout = cl.Get<double>("timeout");
  if (!(timeout > 0)) return UsageError(sub, "--timeout must be positive");

  json s;
  std::string why;
  if (!ReadStats(mp, &s, &why)) {
    // A node that died (SIGKILL, crash) leaves its mount behind, answering
    // ENOTCONN. Nothing can be written back any more: remove the mount.
    if (errno != ENOTCONN) return Fail(sub, why);
    if (umount2(mp.c_str(), 0) != 0 && FusermountUnmount(mp) != 0)
      return Fail(sub, "cannot remove the dead mount " + mp + ": " + std::strerror(errno));
    std::cerr << "vshare umount: the node serving " << mp
              << " had died; removed its mount (blocks it had not written back are lost)\n";
    return 0;
  }
  const pid_t pid = s["node"].value("pid", 0);

  // Write everything back while the node is still mounted, so a failure
  // leaves it mounted with its dirty data rather than losing that data.
  if (int r = SendControl(sub, mp, R"({"cmd":"flush"})"); r != 0) {
    std::cerr << "vshare umount: not unmounting " << mp
              << ": the flush did not complete, so what was written here may not be safe yet (the node keeps it)\n";
    return r;
  }
  int unmounted = umount2(mp.c_str(), 0);
  if (unmounted != 0 && errno == EPERM) unmounted = FusermountUnmount(mp);
  if (unmounted != 0) {
    if (errno == EBUSY)
      return Fail(sub, mp + " is busy: close the files using it first (is an image still loop-mounted? see 'losetup -a')");
    return Fail(sub, "cannot unmount " + mp + ": " + std::strerror(errno));
  }
  // The node writes back anything written since the flush, then exits.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout);
  auto next_note = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (pid > 0 && Running(pid)) {
    auto now = std::chrono::steady_clock::now();
    if (now > deadline)
      return Fail(sub, "unmounted, but the node (pid " + std::to_string(pid) + ") is still running after " +
                           Num(json(timeout)) + " s; see its log");
    if (now > next_note) {
      std::cerr << "vshare umount: waiting for pid " << pid << " to finish writing back\n";
      next_note += std::chrono::seconds(2);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return 0;
}

}  // namespace vshare::cli
