#include "test/sim/sim_net.h"

#include "core/store_io.h"

namespace vshare {

Replica& SimNet::AddRoot(const std::string& name, ReplicaConfig cfg) {
  SimNode& n = nodes_[name];
  n.name = name;
  cfg.is_root = true;
  n.store = std::make_unique<MemStore>(cfg.volume_size, cfg.block_size);
  n.faults = std::make_unique<FaultStore>(n.store.get());
  n.replica = std::make_unique<Replica>(cfg);
  SinkReads(n);
  return *n.replica;
}

// Local reads' bytes are taken at the grant, as TreeNode takes them on a
// mount, so that the simulations run the engine's way of handing them over.
// They join the read's completion when it is collected.
void SimNet::SinkReads(SimNode& n) {
  n.replica->SetReadSink([&n](uint64_t op, std::span<const uint8_t> block) {
    uint8_t* w;
    Bytes copy = Bytes::Allocate(block.size(), &w);
    std::copy(block.begin(), block.end(), w);
    n.sunk[op] = std::move(copy);
    return true;
  });
}

Replica& SimNet::AddNode(const std::string& name, ReplicaConfig cfg, const std::string& parent,
                         std::chrono::milliseconds latency) {
  SimNode& p = node(parent);
  SimNode& n = nodes_[name];
  n.name = name;
  n.parent = parent;
  n.latency = latency;
  n.link_at_parent = p.next_link++;
  p.children[n.link_at_parent] = name;
  cfg.is_root = false;
  n.replica = std::make_unique<Replica>(cfg);
  SinkReads(n);
  return *n.replica;
}

std::chrono::milliseconds SimNet::Latency(const std::string& a, const std::string& b) const {
  const SimNode& na = nodes_.at(a);
  return na.parent == b ? na.latency : nodes_.at(b).latency;
}

void SimNet::Collect(const std::string& name) {
  SimNode& n = node(name);
  Effects e = n.replica->TakeEffects();
  if (e.empty()) return;
  for (LinkId c : e.close_children) {
    auto it = n.children.find(c);
    if (it != n.children.end()) CloseLink(name, std::string(it->second));  // a copy: the entry goes
  }
  for (LocalDone& d : e.done) {
    if (auto it = n.sunk.find(d.op); it != n.sunk.end()) {
      if (d.data.empty()) d.data = std::move(it->second);
      n.sunk.erase(it);
    }
    n.done[d.op] = d.status;
    if (!d.data.empty() && record_reads_) n.reads[d.op] = d.data.ToVector();
    if (on_done) on_done(name, d);
  }
  std::vector<uint64_t> unroutable;  // calls on links that are closed
  for (Outgoing& o : e.messages) {
    if (!o.to_parent && !n.children.count(o.child)) {
      if (o.kind == Outgoing::Kind::kCall) unroutable.push_back(o.call_id);
      continue;
    }
    Delivery d;
    d.from = name;
    d.msg = std::move(o.msg);
    d.to = o.to_parent ? n.parent : n.children.at(o.child);
    d.from_parent = !o.to_parent;
    if (o.kind == Outgoing::Kind::kCall) {
      d.msg.xid = next_xid_++;
      calls_[{name, d.msg.xid}] = PendingCall{o.call_id, d.msg.opcode == Opcode::kHeartbeat, d.to};
      timeouts_.emplace(now_ + (o.timeout.count() ? o.timeout : std::chrono::milliseconds(60000)),
                        std::make_pair(name, d.msg.xid));
    }
    if (n.down) continue;  // a stopped node sends nothing
    if (d.msg.opcode == Opcode::kHeartbeat) {
      d.heartbeat = true;
    } else if (o.kind == Outgoing::Kind::kSend) {
      auto c = calls_.find({d.to, d.msg.xid});
      d.heartbeat = c != calls_.end() && c->second.heartbeat;
    }
    if (!d.heartbeat) ++busy_;
    in_flight_.emplace(now_ + Latency(name, d.to), std::move(d));
  }
  // The root's store, at once.
  std::vector<std::pair<uint64_t, Status>> stored;
  for (const StoreOp& op : e.store) stored.push_back({op.id, RunStoreOp(op, n.replica->table(), n.faults.get())});
  for (uint64_t call : unroutable) n.replica->OnReply(call, Status::IOError("child is gone (simulated)"), {}, now_);
  for (const auto& [id, st] : stored) n.replica->OnStoreDone(id, st, now_);
  // No kernel here: a page drop is done at once, fenced as the dropper would.
  std::vector<uint64_t> dropped;
  for (const PageDrop& d : e.page_drops)
    if (d.token) {
      if (d.table) d.table->Fence(d.first);
      dropped.push_back(d.token);
    }
  for (uint64_t t : dropped) n.replica->PagesDropped(t, now_);
  if (e.drop_parent) n.parent_dropped = true;
  if (e.drop_parent && !n.parent.empty() && !nodes_.at(n.parent).down &&
      nodes_.at(n.parent).children.count(n.link_at_parent)) {
    nodes_.at(n.parent).replica->OnChildGone(n.link_at_parent, now_);
    CloseLink(n.parent, name);
  }
  if (!unroutable.empty() || !stored.empty() || !dropped.empty()) Collect(name);
}

void SimNet::Deliver(const Delivery& d) {
  if (!d.heartbeat) --busy_;
  SimNode& n = node(d.to);
  if (n.down) return;  // lost
  ++deliveries_;
  ++n.delivered;
  if (d.msg.data) n.data_in += d.msg.data->size();
  const bool is_reply = d.msg.opcode == Opcode::kOkReply || d.msg.opcode == Opcode::kErrReply;
  bool heartbeat = d.msg.opcode == Opcode::kHeartbeat;
  if (is_reply) {
    auto it = calls_.find({d.to, d.msg.xid});
    heartbeat = it != calls_.end() && it->second.heartbeat;
  }
  if (!heartbeat && logging_) log_.push_back(d.from + "->" + d.to + " " + Summary(d.msg));
  if (is_reply) {
    auto it = calls_.find({d.to, d.msg.xid});
    if (it != calls_.end()) {
      const uint64_t call = it->second.call_id;
      if (!(d.msg.flags & msg_flags::kMore)) calls_.erase(it);  // the last part ends the call
      n.replica->OnReply(call, Status::Ok(), d.msg, now_);
    }
  } else if (d.from_parent) {
    n.replica->OnParentMessage(d.msg, now_);
  } else {
    n.replica->OnChildMessage(node(d.from).link_at_parent, d.msg, now_);
  }
  Collect(d.to);
}

void SimNet::SetDown(const std::string& name, bool down) {
  SimNode& n = node(name);
  n.down = down;
  if (down) return;
  for (uint64_t call : std::exchange(n.calls_failed, {}))
    n.replica->OnReply(call, Status::IOError("link closed (simulated)"), {}, now_);
  for (LinkId link : std::exchange(n.children_gone, {})) n.replica->OnChildGone(link, now_);
  Collect(name);
  if (n.link_lost) Reconnect(name);
}

void SimNet::MoveTo(const std::string& child, const std::string& new_parent) {
  SimNode& c = node(child);
  SimNode& old = node(c.parent);
  if (old.children.count(c.link_at_parent)) {
    if (old.down) old.children_gone.push_back(c.link_at_parent);
    else old.replica->OnChildGone(c.link_at_parent, now_);
    CloseLink(c.parent, child, /*reconnect=*/false);
  }
  c.parent = new_parent;
  Reconnect(child);
}

void SimNet::CloseLink(const std::string& parent, const std::string& child, bool reconnect) {
  SimNode& p = node(parent);
  SimNode& c = node(child);
  p.children.erase(c.link_at_parent);
  for (auto it = in_flight_.begin(); it != in_flight_.end();) {
    const Delivery& d = it->second;
    if ((d.from == parent && d.to == child) || (d.from == child && d.to == parent)) {
      if (!d.heartbeat) --busy_;
      it = in_flight_.erase(it);
    } else {
      ++it;
    }
  }
  std::vector<std::pair<std::string, uint64_t>> cut;
  for (const auto& [key, call] : calls_)
    if ((key.first == parent && call.to == child) || (key.first == child && call.to == parent)) cut.push_back(key);
  for (const auto& key : cut) {
    const uint64_t call = calls_.at(key).call_id;
    calls_.erase(key);
    SimNode& caller = node(key.first);
    if (caller.down) caller.calls_failed.push_back(call);
    else caller.replica->OnReply(call, Status::IOError("link closed (simulated)"), {}, now_);
  }
  c.link_lost = reconnect;
  if (reconnect && !c.down) Reconnect(child);
  Collect(parent);
}

void SimNet::Kill(const std::string& name) {
  SimNode& n = node(name);
  n.down = true;
  for (auto it = in_flight_.begin(); it != in_flight_.end();) {
    if (it->second.from == name || it->second.to == name) {
      if (!it->second.heartbeat) --busy_;
      it = in_flight_.erase(it);
    } else {
      ++it;
    }
  }
  std::vector<std::pair<std::string, uint64_t>> cut;
  for (const auto& [key, call] : calls_)
    if (call.to == name || key.first == name) cut.push_back(key);
  for (const auto& key : cut) {
    const uint64_t call = calls_.at(key).call_id;
    calls_.erase(key);
    if (key.first == name) continue;
    node(key.first).replica->OnReply(call, Status::IOError("link closed (simulated)"), {}, now_);
    Collect(key.first);
  }
  if (!n.parent.empty()) {
    SimNode& p = node(n.parent);
    p.children.erase(n.link_at_parent);
    p.replica->OnChildGone(n.link_at_parent, now_);
    Collect(n.parent);
  }
  for (const auto& [link, child] : std::map(n.children)) {
    node(child).replica->OnParentLost(now_);
    Collect(child);
  }
}

void SimNet::Reconnect(const std::string& child) {
  SimNode& c = node(child);
  SimNode& p = node(c.parent);
  c.link_lost = false;
  c.replica->OnParentLost(now_);
  c.link_at_parent = p.next_link++;
  p.children[c.link_at_parent] = child;
  c.replica->Rejoin(now_);
  Collect(child);
}

void SimNet::TickAll() {
  for (auto& [name, n] : nodes_) {
    if (n.down) continue;
    n.replica->Tick(now_);
    Collect(name);
  }
}

void SimNet::TickUntil(Time t) {
  const auto tick = std::chrono::milliseconds(100);
  if (next_tick_ <= now_ - tick) next_tick_ = now_;
  while (next_tick_ <= t) {
    now_ = std::max(now_, next_tick_);
    next_tick_ += tick;
    TickAll();
  }
}

void SimNet::ExpireCalls() {
  while (!timeouts_.empty() && timeouts_.begin()->first <= now_) {
    auto [name, xid] = timeouts_.begin()->second;
    timeouts_.erase(timeouts_.begin());
    auto it = calls_.find({name, xid});
    if (it == calls_.end()) continue;  // answered
    const uint64_t call = it->second.call_id;
    calls_.erase(it);
    SimNode& n = node(name);
    if (n.down) continue;
    n.replica->OnReply(call, Status::TimedOut("no answer (simulated)"), {}, now_);
    Collect(name);
  }
}

void SimNet::Advance(std::chrono::milliseconds d) {
  const Time end = now_ + d;
  const auto tick = std::chrono::milliseconds(100);
  if (next_tick_ <= now_) next_tick_ = now_ + tick;
  for (;;) {
    Time next = std::min(end, next_tick_);
    if (!in_flight_.empty()) next = std::min(next, in_flight_.begin()->first);
    if (!timeouts_.empty()) next = std::min(next, timeouts_.begin()->first);
    now_ = std::max(now_, next);
    if (!in_flight_.empty() && in_flight_.begin()->first <= now_) {
      auto it = in_flight_.begin();
      Delivery dv = std::move(it->second);
      in_flight_.erase(it);
      Deliver(dv);
      continue;
    }
    if (!timeouts_.empty() && timeouts_.begin()->first <= now_) {
      ExpireCalls();
      continue;
    }
    if (now_ >= next_tick_) {
      next_tick_ += tick;
      TickAll();
      continue;
    }
    if (now_ >= end) return;
  }
}

void SimNet::Run(size_t limit) {
  for (size_t i = 0; i < limit && busy_ > 0 && !in_flight_.empty(); ++i) {
    auto first = in_flight_.begin();
    if (first->first > now_) {
      TickUntil(first->first);  // may add messages that arrive sooner
      first = in_flight_.begin();
    }
    Delivery d = std::move(first->second);
    if (first->first > now_) now_ = first->first;
    in_flight_.erase(first);
    Deliver(d);
  }
}

std::string SimNet::Summary(const Message& m) {
  static const char* kPerm[] = {"NONE", "READ", "WRITE"};
  std::string s = OpcodeName(m.opcode);
  if (m.io_op) s += std::string("/") + IoOpName(*m.io_op);
  if (m.volume_name) s += " name=" + *m.volume_name;
  if (m.volume_id) s += " vol=" + std::to_string(*m.volume_id);
  if (m.block_num) s += " block=" + std::to_string(*m.block_num);
  if (m.count) s += " count=" + std::to_string(*m.count);
  if (m.permissions) s += std::string(" perm=") + kPerm[static_cast<int>(*m.permissions)];
  if (m.ttl_ms) s += " ttl=" + std::to_string(*m.ttl_ms);
  if (m.hb_ttl_ms) s += " hb_ttl=" + std::to_string(*m.hb_ttl_ms);
  if (m.data) s += " data";
  if (m.mask) s += " mask";
  if (m.opcode == Opcode::kIoRequest && (m.version.value_or(0) != 0 || m.versions))
    s += " version";  // revalidating a kept copy
  if (m.status) s += std::string(" status=") + WireStatusName(*m.status);
  if (m.flags & msg_flags::kMore) s += " more";
  return s;
}

}  // namespace vshare
