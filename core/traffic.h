// TrafficCounters: what a tree node sent and received, by kind, for stats.
//
// A request is named by what it asks for: the IO_OP of an IO_REQUEST (GET,
// PUT, FLUSH, LOCK), SYNC for a barrier (FLUSH without BLOCK_NUM), LEASE for
// the writer lease (LOCK without BLOCK_NUM), else its opcode. Bytes are
// those of DATA parameters only: what moved blocks, not headers.
// Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "core/message.h"
#include "core/status.h"

namespace vshare {

struct TrafficSnapshot {
  std::map<std::string, uint64_t> sent;    // requests to the parent, by kind
  std::map<std::string, uint64_t> served;  // requests from children, by kind
  // The blocks those requests were about (a range request counts COUNT).
  std::map<std::string, uint64_t> sent_blocks;
  std::map<std::string, uint64_t> served_blocks;
  uint64_t invalidations_sent = 0;         // to children
  uint64_t invalidations_received = 0;     // from the parent
  uint64_t pushes_received = 0;
  uint64_t bytes_from_parent = 0;
  uint64_t bytes_to_parent = 0;
  uint64_t bytes_from_children = 0;
  uint64_t bytes_to_children = 0;
  // ERR_REPLY statuses sent to children, and those received from the
  // parent; calls that got no reply at all count as "NO_REPLY".
  std::map<std::string, uint64_t> errors_sent;
  std::map<std::string, uint64_t> errors_received;
};

// "GET", "SYNC", "LEASE", "CONNECT", ...
std::string RequestKind(const Message& m);

class TrafficCounters {
 public:
  void FromParent(const Message& m);  // a request, notification or reply
  void ToParent(const Message& m);
  void FromChild(const Message& m);
  void ToChild(const Message& m);
  void CallFailed();  // a call ended without a reply (timeout, link lost)
  TrafficSnapshot Snapshot() const;
  void Reset();

 private:
  mutable std::mutex mu_;
  TrafficSnapshot s_;  // guarded by mu_
};

}  // namespace vshare
