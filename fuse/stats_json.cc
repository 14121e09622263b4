#include "fuse/stats_json.h"

#include <unistd.h>

namespace vshare {

namespace {

nlohmann::json Latency(uint64_t total_ns, uint64_t count, uint64_t max_ns) {
  return {{"avg_us", count ? static_cast<double>(total_ns) / count / 1000.0 : 0.0},
          {"max_us", static_cast<double>(max_ns) / 1000.0}};
}

nlohmann::json VolumeJson(const VolumeIo& v) {
  const VolumeStats s = v.stats();
  const CacheGeometry g = v.cache_geometry();
  nlohmann::json level = {
      {"level", 0},
      {"medium", "memory"},
      {"sets", g.sets},
      {"ways", g.ways},
      {"hash", CacheHashName(g.hash)},
      {"capacity_blocks", g.capacity_blocks()},
      {"used_blocks", s.cache.used_blocks},
      {"dirty_blocks", s.cache.dirty_blocks},
      {"hits", s.cache.hits},
      {"misses", s.cache.misses},
      {"insertions", s.cache.insertions},
      {"evictions", s.cache.evictions},
      {"readahead_blocks", s.cache.readahead_blocks},
      {"readahead_hits", s.cache.readahead_hits},
  };
  return {
      {"size", v.size()},
      {"block_size", v.block_size()},
      {"reads", s.reads},
      {"writes", s.writes},
      {"bytes_read", s.bytes_read},
      {"bytes_written", s.bytes_written},
      {"read_latency", Latency(s.read_ns_total, s.reads, s.read_ns_max)},
      {"write_latency", Latency(s.write_ns_total, s.writes, s.write_ns_max)},
      {"dirty_blocks", s.cache.dirty_blocks},
      {"store_reads", s.store_reads},
      {"store_writes", s.store_writes},
      {"flushes", s.flushes},
      {"errors", s.errors},
      {"cache",
       {{"hits", s.cache.hits},
        {"misses", s.cache.misses},
        {"evictions", s.cache.evictions},
        {"readahead_blocks", s.cache.readahead_blocks},
        {"readahead_hits", s.cache.readahead_hits},
        {"capacity_bytes", g.capacity_bytes()},
        {"levels", g.sets > 0 ? nlohmann::json::array({level}) : nlohmann::json::array()}}},
  };
}

nlohmann::json TrafficJson(const TrafficSnapshot& t) {
  return {{"sent", t.sent},
          {"served", t.served},
          {"sent_blocks", t.sent_blocks},
          {"served_blocks", t.served_blocks},
          {"invalidations_sent", t.invalidations_sent},
          {"invalidations_received", t.invalidations_received},
          {"pushes_received", t.pushes_received},
          {"bytes_from_parent", t.bytes_from_parent},
          {"bytes_to_parent", t.bytes_to_parent},
          {"bytes_from_children", t.bytes_from_children},
          {"bytes_to_children", t.bytes_to_children},
          {"errors_sent", t.errors_sent},
          {"errors_received", t.errors_received}};
}

}  // namespace

nlohmann::json NodeStatsJson(const Node& node, const NodeStatsContext& ctx) {
  nlohmann::json volumes = nlohmann::json::object();
  for (const auto& v : node.volumes()) volumes[v->name()] = VolumeJson(*v);
  nlohmann::json tree = nullptr;
  if (auto t = node.tree_stats()) {
    static const char* kLease[] = {"none", "shared", "exclusive"};
    const ReplicaStats& r = t->replica;
    tree = {{"parent", t->parent},
            {"upstream", t->upstream},
            {"listen_port", t->listen_port},
            {"children", t->children},
            {"requests_served", t->requests_served},
            {"calls_to_parent", t->calls_to_parent},
            {"calls_to_children", t->calls_to_children},
            {"child_send_peak_bytes", t->child_send_peak_bytes},
            {"child_send_pauses", t->child_send_pauses},
            {"local_timeouts", t->local_timeouts},
            {"child_addresses", t->child_addresses},
            {"writer_lease", kLease[static_cast<int>(t->writer_lease)]},
            {"lease", {{"valid", r.valid}, {"ms_left", r.ms_left}, {"ms_since_renewal", r.ms_since_renewal}}},
            {"grants", r.grants},
            {"frozen_blocks", r.frozen_blocks},
            {"failed_children", r.failed_children},
            {"rejoins", r.rejoins},
            {"reparents", t->reparents},
            {"recovered", r.recovered},
            {"recovery_lost", r.recovery_lost},
            {"claims_served", r.claims_served},
            {"revalidated", r.revalidated},
            {"sync_write_throughs", r.sync_write_throughs},
            {"kernel_page_drops", r.kernel_page_drops},
            {"kernel_full_drops", r.kernel_full_drops},
            {"traffic", TrafficJson(t->traffic)}};
    if (!t->root_role.empty())
      tree["root_peer"] = {{"peer", t->root_peer}, {"role", t->root_role}, {"lease_ms_left", t->root_lease_ms_left}};
  }
  return {
      {"tree", tree},
      {"version", VSHARE_VERSION},
      {"node",
       {{"role", node.role()},
        {"pid", static_cast<int>(getpid())},
        {"mountpoint", ctx.mountpoint},
        {"uptime_s", node.uptime_seconds()},
        {"flush_interval_s", ctx.flush_interval_s},
        {"write_mode", node.write_mode()},
        {"dirty_blocks", node.DirtyBlocks()}}},
      {"volumes", volumes},
      {"last_error", node.last_error()},
  };
}

}  // namespace vshare
