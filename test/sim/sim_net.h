// SimNet: an in-process network of Replicas with a simulated clock, for
// socket-free tests and simulations of whole trees. It carries out the
// engine's effects (core/effects.h) as net/tree_node does over TCP: messages
// travel with a per-link one-way latency and arrive in time order (FIFO per
// link, as on TCP); a range request's reply parts keep the call open until
// the last; the root's store I/O runs at once on an in-memory store behind a
// FaultStore; children the engine declares failed have their links closed,
// and a node that stops hearing its parent drops the link and joins again.
// Every delivery is logged as "FROM->TO summary", except heartbeats.
//
// Time moves in two ways. Run() delivers what is in flight, the clock
// jumping to each arrival. Advance() lets time pass as it would for real
// nodes: every node is ticked every 100 ms (heartbeats, failure detection),
// messages arrive when due, and calls that got no answer fail at their
// timeout (60 s unless the caller set one). A node set down (SetDown) is as
// if stopped: it neither ticks nor receives, and what it is sent, or sends,
// is lost.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/fault_store.h"
#include "core/mem_store.h"
#include "core/replica.h"

namespace vshare {

class SimNet {
 public:
  explicit SimNet(Time start = Time{}) : now_(start) {}

  // The root, over an in-memory store of cfg.volume_size bytes.
  Replica& AddRoot(const std::string& name, ReplicaConfig cfg);
  // A node under `parent`, `latency` away (one way).
  Replica& AddNode(const std::string& name, ReplicaConfig cfg, const std::string& parent,
                   std::chrono::milliseconds latency = std::chrono::milliseconds(0));

  Replica& replica(const std::string& name) { return *node(name).replica; }
  MemStore* store(const std::string& name) { return node(name).store.get(); }
  // Faults to inject into a root's store (core/fault_store.h).
  FaultStore* faults(const std::string& name) { return node(name).faults.get(); }

  // Lets a node act (Start, StartLocal, ...) and then carries out what it
  // asked for.
  template <typename F>
  auto Act(const std::string& name, F&& f) {
    auto result = f(replica(name), now_);
    Collect(name);
    return result;
  }
  // Delivers messages until none but heartbeats are in flight (at most
  // `limit` deliveries), ticking the nodes as the clock moves.
  void Run(size_t limit = 100000000);
  void Advance(std::chrono::milliseconds d);
  // A node set down is stopped (SIGSTOP); set up again, it goes on where it
  // was (SIGCONT), and rejoins if its parent closed its link meanwhile.
  void SetDown(const std::string& name, bool down);
  // The node dies (SIGKILL): its links close at once, so its parent and
  // children see them go; it never comes back.
  void Kill(const std::string& name);
  // The node's link to its parent closes and it joins `new_parent` instead
  // (reparenting). A stopped parent finds the link closed when it runs again.
  void MoveTo(const std::string& child, const std::string& new_parent);
  Time now() const { return now_; }
  const std::string& parent_of(const std::string& name) { return node(name).parent; }
  // Whether the node's engine has given up on its parent (drop_parent)
  // since the last call. A running parent has the link closed at once and
  // the node joins it again; a stopped one keeps it, and a caller that
  // models reparenting moves the node (MoveTo).
  bool TakeParentDropped(const std::string& name) { return std::exchange(node(name).parent_dropped, false); }

  std::vector<std::string> TakeLog() { return std::exchange(log_, {}); }
  // Set false to keep no log at all, and no bytes of reads (large
  // simulations).
  void set_logging(bool on) { logging_ = on; }
  void set_record_reads(bool on) { record_reads_ = on; }
  // Local completions per node, by operation id.
  std::map<uint64_t, Status>& done(const std::string& name) { return node(name).done; }
  // The bytes a completed ReadLocal returned.
  std::map<uint64_t, std::vector<uint8_t>>& reads(const std::string& name) { return node(name).reads; }
  // Called at the instant a local operation completes (before anything else
  // happens), e.g. to read or write the block while the grant is fresh.
  std::function<void(const std::string& node, const LocalDone& d)> on_done;
  // Messages delivered to each node, and DATA bytes, for load figures.
  uint64_t delivered(const std::string& name) { return node(name).delivered; }
  uint64_t data_bytes_to(const std::string& name) { return node(name).data_in; }
  uint64_t deliveries() const { return deliveries_; }

  // "IO_REQUEST/GET vol=32002 block=7 perm=READ": the fields the primary
  // source's examples show, in a fixed order.
  static std::string Summary(const Message& m);

 private:
  struct SimNode {
    std::string name;
    std::string parent;
    LinkId link_at_parent = 0;
    std::chrono::milliseconds latency{0};
    std::map<LinkId, std::string> children;
    LinkId next_link = 1;
    std::unique_ptr<MemStore> store;
    std::unique_ptr<FaultStore> faults;
    std::unique_ptr<Replica> replica;
    std::map<uint64_t, Status> done;
    std::map<uint64_t, std::vector<uint8_t>> reads;
    std::map<uint64_t, Bytes> sunk;  // a read's bytes, taken at its grant, until it completes
    bool down = false;
    bool link_lost = false;  // the parent closed our link while we were down
    // While it was down: links to children that closed, and calls of its
    // that failed with them. It learns of both when it runs again.
    std::vector<LinkId> children_gone;
    std::vector<uint64_t> calls_failed;
    bool parent_dropped = false;  // its engine gave up on its parent (see TakeParentDropped)
    uint64_t delivered = 0, data_in = 0;
  };
  struct PendingCall {
    uint64_t call_id;
    bool heartbeat;
    std::string to;
  };
  struct Delivery {
    std::string from, to;
    bool from_parent;        // delivered to `to` as coming from its parent
    bool heartbeat = false;  // a HEARTBEAT or its answer
    Message msg;
  };

  SimNode& node(const std::string& name) { return nodes_.at(name); }
  void SinkReads(SimNode& n);
  void Collect(const std::string& name);
  void Deliver(const Delivery& d);
  void TickAll();
  // The parent `parent` declared `child` failed and closed their link: calls
  // on it fail, what is in flight on it is lost, and (once the child runs)
  // the child joins again over a new link.
  void CloseLink(const std::string& parent, const std::string& child, bool reconnect = true);
  void Reconnect(const std::string& child);
  // Ticks every node at each 100 ms boundary up to `t`.
  void TickUntil(Time t);
  // Fails the calls whose timeout is at or before now_ and are unanswered.
  void ExpireCalls();
  std::chrono::milliseconds Latency(const std::string& a, const std::string& b) const;

  size_t busy_ = 0;  // deliveries in flight other than heartbeats
  Time now_;
  std::map<std::string, SimNode> nodes_;
  std::multimap<Time, Delivery> in_flight_;
  // (node, wire xid) -> that node's call, for routing replies.
  std::map<std::pair<std::string, uint64_t>, PendingCall> calls_;
  std::multimap<Time, std::pair<std::string, uint64_t>> timeouts_;  // when each call gives up
  Time next_tick_{};
  uint64_t next_xid_ = 1;
  uint64_t deliveries_ = 0;
  bool logging_ = true;
  bool record_reads_ = true;
  std::vector<std::string> log_;
};

}  // namespace vshare
