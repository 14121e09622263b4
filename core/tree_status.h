// TreeStatus: where a node stands in the tree, for stats and status: one
// snapshot, published by the node's I/O thread once per tick and read by
// anyone (stats, status, tests) without touching the engine.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/coherence.h"
#include "core/replica.h"
#include "core/traffic.h"

namespace vshare {

struct TreeStatus {
  ReplicaStats replica;                // the lease, failures, recovery, grants
  uint16_t listen_port = 0;
  uint64_t children = 0;
  std::vector<std::string> child_addresses;  // where each child connects from
  std::string parent;                  // HOST:PORT joined now (it changes on reparenting); empty on the root
  std::vector<std::string> upstream;   // the parent's ancestors, nearest first: where to go if it fails
  uint64_t reparents = 0;              // joins below a different parent than before
  uint64_t requests_served = 0;        // requests from children (a range counts once)
  uint64_t calls_to_parent = 0;
  uint64_t calls_to_children = 0;
  // The bytes queued for children at most, and how often a child's link
  // stopped reading because of them (net/connection.h, SendBudget).
  uint64_t child_send_peak_bytes = 0;
  uint64_t child_send_pauses = 0;
  uint64_t local_ops = 0;
  uint64_t local_timeouts = 0;
  Perm writer_lease = Perm::kNone;     // held by this node's open files
  // A root with a peer root: "active", "standby", ... (empty otherwise),
  // and its root lease's time left (-1: unbounded).
  std::string root_role;
  std::string root_peer;
  int64_t root_lease_ms_left = -1;
  bool connected = false;
  TrafficSnapshot traffic;
};

}  // namespace vshare
