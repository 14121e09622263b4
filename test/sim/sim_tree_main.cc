// sim_tree: a large tree in the in-process network, running the real engine.
//
//   sim_tree [--fanout N] [--levels L] [--read BYTES] [--quiet]
//
// Builds a root and L levels of N children each (fan-out 10, four levels:
// 11,110 nodes below the root), lets every node read the same first BYTES of
// the volume at once, then has one leaf write a block everyone holds. It
// checks, and prints:
//  - every read returned the root's bytes;
//  - the root sent each block's bytes once per direct child, no more;
//  - the write's invalidations reached exactly the nodes holding the block
//    (every node but the writer and its ancestors), each once;
//  - the wall time and the events (deliveries) per second.
// Exit status 0 when every check holds. The tables keep no bytes (the
// engine moves every message as usual), so memory stays small.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "test/sim/sim_net.h"

using namespace vshare;

namespace {

constexpr uint32_t kBs = 4096;

ReplicaConfig Cfg(uint32_t id, uint32_t self, uint64_t cache_bytes) {
  ReplicaConfig c;
  c.volume_name = "vol";
  c.volume_id = id;
  c.volume_size = 64ull << 20;
  c.block_size = kBs;
  c.self[12] = static_cast<uint8_t>(self >> 24);
  c.self[13] = static_cast<uint8_t>(self >> 16);
  c.self[14] = static_cast<uint8_t>(self >> 8);
  c.self[15] = static_cast<uint8_t>(self);
  c.cache_bytes = cache_bytes;
  c.keep_data = false;
  c.hb_ttl_ms = 3600 * 1000;  // an hour: no heartbeats in a run of simulated seconds
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  int fanout = 10, levels = 4;
  uint64_t read_bytes = 4u << 20;
  bool quiet = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--fanout" && i + 1 < argc) fanout = std::stoi(argv[++i]);
    else if (a == "--levels" && i + 1 < argc) levels = std::stoi(argv[++i]);
    else if (a == "--read" && i + 1 < argc) read_bytes = std::stoull(argv[++i]);
    else if (a == "--quiet") quiet = true;
    else {
      std::fprintf(stderr, "usage: sim_tree [--fanout N] [--levels L] [--read BYTES] [--quiet]\n");
      return 2;
    }
  }
  if (fanout < 1 || fanout > 64 || levels < 1 || levels > 6 || read_bytes < kBs || read_bytes > (32u << 20)) {
    std::fprintf(stderr, "sim_tree: fanout 1-64, levels 1-6, read 4K-32M\n");
    return 2;
  }
  const uint64_t blocks = read_bytes / kBs;
  const auto wall0 = std::chrono::steady_clock::now();
  SimNet net;
  net.set_logging(false);
  net.set_record_reads(false);
  net.AddRoot("r", Cfg(1, 1, 2 * read_bytes));
  std::vector<std::vector<std::string>> level(levels + 1);
  level[0] = {"r"};
  std::map<std::string, std::string> parent_of;
  uint32_t next = 2;
  for (int l = 1; l <= levels; ++l)
    for (const std::string& p : level[l - 1])
      for (int c = 0; c < fanout; ++c) {
        std::string name = p + "." + std::to_string(c);
        net.AddNode(name, Cfg(next, next, 2 * read_bytes), p);
        ++next;
        parent_of[name] = p;
        level[l].push_back(name);
      }
  size_t nodes = 0;
  for (int l = 1; l <= levels; ++l) nodes += level[l].size();
  // Everyone joins.
  for (int l = 1; l <= levels; ++l)
    for (const std::string& n : level[l]) net.Act(n, [](Replica& r, Time now) { r.Start(now); return 0; });
  net.Run();
  const uint64_t joined_deliveries = net.deliveries();
  // Everyone reads the same range at once.
  std::map<std::string, std::vector<uint64_t>> ops;
  for (int l = 1; l <= levels; ++l)
    for (const std::string& n : level[l])
      net.Act(n, [&](Replica& r, Time now) {
        for (uint64_t b = 0; b < blocks; ++b) ops[n].push_back(r.ReadLocal(b, now));
        return 0;
      });
  net.Run();
  bool ok = true;
  size_t reads_ok = 0;
  for (auto& [n, list] : ops)
    for (uint64_t op : list) reads_ok += net.done(n).count(op) && net.done(n)[op].ok();
  const size_t reads_wanted = nodes * blocks;
  // What the root sent: each block once per direct child.
  uint64_t root_sent = 0;
  for (const std::string& c : level[1]) root_sent += net.data_bytes_to(c);
  const uint64_t root_sent_blocks = root_sent / kBs;
  const uint64_t read_deliveries = net.deliveries() - joined_deliveries;
  // One leaf writes block 0: who is told to drop it?
  std::map<std::string, uint64_t> delivered_before;
  for (const auto& [n, p] : parent_of) delivered_before[n] = net.delivered(n);
  const std::string writer = level[levels].back();
  const uint64_t before_write = net.deliveries();
  uint64_t w = net.Act(writer, [](Replica& r, Time now) { return r.WriteLocal(0, 0, Bytes::Zeros(kBs), now); });
  net.Run();
  const bool write_ok = net.done(writer).count(w) && net.done(writer)[w].ok();
  std::set<std::string> chain{writer};
  for (std::string n = writer; parent_of.count(n); n = parent_of[n]) chain.insert(parent_of[n]);
  // Every node but the writer's chain held block 0 and must have lost it;
  // the chain holds WRITE down to the writer.
  size_t invalidated = 0, wrong = 0;
  for (const auto& [n, p] : parent_of) {
    const Perm held = net.replica(n).HeldAt(0, net.now());
    const bool on_chain = chain.count(n) > 0;
    if (on_chain ? held != Perm::kWrite : held != Perm::kNone) ++wrong;
    if (!on_chain) ++invalidated;
  }
  const uint64_t write_deliveries = net.deliveries() - before_write;
  // Each invalidated node got one INVALIDATE and sent one answer; the chain
  // carried the request up and the grant down: nothing else moved.
  const uint64_t expected_write_deliveries = 2 * invalidated + 2 * (chain.size() - 1);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  ok = reads_ok == reads_wanted && root_sent_blocks == blocks * level[1].size() && write_ok && wrong == 0 &&
       write_deliveries == expected_write_deliveries;
  if (!quiet || !ok) {
    std::printf("simulated tree: %zu nodes below the root (fan-out %d, %d levels), each reading %llu blocks (%llu KiB)\n",
                nodes, fanout, levels, static_cast<unsigned long long>(blocks),
                static_cast<unsigned long long>(read_bytes >> 10));
    std::printf("  %-58s %12s %12s %s\n", "check", "measured", "wanted", "");
    auto row = [](const char* what, uint64_t got, uint64_t want, bool pass) {
      std::printf("  %-58s %12llu %12llu %s\n", what, static_cast<unsigned long long>(got),
                  static_cast<unsigned long long>(want), pass ? "ok" : "FAIL");
    };
    row("reads that returned", reads_ok, reads_wanted, reads_ok == reads_wanted);
    row("blocks the root sent (once per direct child)", root_sent_blocks, blocks * level[1].size(),
        root_sent_blocks == blocks * level[1].size());
    row("nodes that lost block 0 to the write (all but the chain)", invalidated, nodes - (chain.size() - 1),
        wrong == 0 && write_ok);
    row("messages the write took (2 per invalidated node + chain)", write_deliveries, expected_write_deliveries,
        write_deliveries == expected_write_deliveries);
    // A delivery of a range carries many blocks: both rates are shown.
    std::printf("  wall time %.2f s; %llu messages delivered (%llu for the reads: ranges), %.0f messages/s, "
                "%.0f blocks read/s\n",
                wall, static_cast<unsigned long long>(net.deliveries()), static_cast<unsigned long long>(read_deliveries),
                net.deliveries() / wall, reads_ok / wall);
  }
  return ok ? 0 : 1;
}
