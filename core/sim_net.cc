#include "core/sim_net.h"

namespace vshare {

Replica& SimNet::AddRoot(const std::string& name, ReplicaConfig cfg) {
  SimNode& n = nodes_[name];
  cfg.is_root = true;
  n.store = std::make_unique<MemStore>(cfg.volume_size, cfg.block_size);
  n.store_data = std::make_unique<StoreBlockData>(n.store.get());
  n.replica = std::make_unique<Replica>(cfg, n.store_data.get());
  return *n.replica;
}

Replica& SimNet::AddNode(const std::string& name, ReplicaConfig cfg, const std::string& parent,
                         std::chrono::milliseconds latency) {
  SimNode& p = nodes_.at(parent);
  SimNode& n = nodes_[name];
  n.parent = parent;
  n.latency = latency;
  n.link_at_parent = p.next_link++;
  p.children[n.link_at_parent] = name;
  n.copies = std::make_unique<MapBlockData>();
  cfg.is_root = false;
  n.replica = std::make_unique<Replica>(cfg, n.copies.get());
  return *n.replica;
}

std::chrono::milliseconds SimNet::Latency(const std::string& a, const std::string& b) const {
  const SimNode& na = nodes_.at(a);
  return na.parent == b ? na.latency : nodes_.at(b).latency;
}

void SimNet::Collect(const std::string& name) {
  SimNode& n = nodes_.at(name);
  for (LinkId c : n.replica->TakeFailedChildren()) {
    auto it = n.children.find(c);
    if (it != n.children.end()) CloseLink(name, std::string(it->second));  // a copy: the entry goes
  }
  for (LocalDone& d : n.replica->TakeLocalDone()) {
    n.done[d.op] = d.status;
    if (!d.data.empty()) n.reads[d.op] = d.data;
    if (on_done) on_done(name, d);
  }
  std::vector<uint64_t> unroutable;  // calls on links that are closed
  for (Outgoing& o : n.replica->TakeOutbox()) {
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
  for (uint64_t call : unroutable) {
    n.replica->OnReply(call, Status::IOError("child is gone (simulated)"), {}, now_);
    Collect(name);
  }
}

void SimNet::Deliver(const Delivery& d) {
  if (!d.heartbeat) --busy_;
  SimNode& n = nodes_.at(d.to);
  if (n.down) return;  // lost
  const bool is_reply = d.msg.opcode == Opcode::kOkReply || d.msg.opcode == Opcode::kErrReply;
  bool heartbeat = d.msg.opcode == Opcode::kHeartbeat;
  if (is_reply) {
    auto it = calls_.find({d.to, d.msg.xid});
    heartbeat = it != calls_.end() && it->second.heartbeat;
  }
  if (!heartbeat) log_.push_back(d.from + "->" + d.to + " " + Summary(d.msg));
  if (is_reply) {
    auto it = calls_.find({d.to, d.msg.xid});
    if (it != calls_.end()) {
      uint64_t call = it->second.call_id;
      calls_.erase(it);
      n.replica->OnReply(call, Status::Ok(), d.msg, now_);
    }
  } else if (d.from_parent) {
    n.replica->OnParentMessage(d.msg, now_);
  } else {
    n.replica->OnChildMessage(nodes_.at(d.from).link_at_parent, d.msg, now_);
  }
  Collect(d.to);
}

void SimNet::SetDown(const std::string& name, bool down) {
  SimNode& n = nodes_.at(name);
  n.down = down;
  if (!down && n.link_lost) Reconnect(name);
}

void SimNet::MoveTo(const std::string& child, const std::string& new_parent) {
  SimNode& c = nodes_.at(child);
  SimNode& old = nodes_.at(c.parent);
  if (!old.down && old.children.count(c.link_at_parent)) {
    old.replica->OnChildGone(c.link_at_parent, now_);
    CloseLink(c.parent, child, /*reconnect=*/false);
  }
  c.parent = new_parent;
  Reconnect(child);
}

void SimNet::CloseLink(const std::string& parent, const std::string& child, bool reconnect) {
  SimNode& p = nodes_.at(parent);
  SimNode& c = nodes_.at(child);
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
    uint64_t call = calls_.at(key).call_id;
    calls_.erase(key);
    SimNode& caller = nodes_.at(key.first);
    if (!caller.down) caller.replica->OnReply(call, Status::IOError("link closed (simulated)"), {}, now_);
  }
  c.link_lost = reconnect;
  if (reconnect && !c.down) Reconnect(child);
  Collect(parent);
}

void SimNet::Kill(const std::string& name) {
  SimNode& n = nodes_.at(name);
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
    uint64_t call = calls_.at(key).call_id;
    calls_.erase(key);
    if (key.first == name) continue;
    nodes_.at(key.first).replica->OnReply(call, Status::IOError("link closed (simulated)"), {}, now_);
    Collect(key.first);
  }
  if (!n.parent.empty()) {
    SimNode& p = nodes_.at(n.parent);
    p.children.erase(n.link_at_parent);
    p.replica->OnChildGone(n.link_at_parent, now_);
    Collect(n.parent);
  }
  for (const auto& [link, child] : std::map(n.children)) {
    nodes_.at(child).replica->OnParentLost(now_);
    Collect(child);
  }
}

void SimNet::Reconnect(const std::string& child) {
  SimNode& c = nodes_.at(child);
  SimNode& p = nodes_.at(c.parent);
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
    auto [node, xid] = timeouts_.begin()->second;
    timeouts_.erase(timeouts_.begin());
    auto it = calls_.find({node, xid});
    if (it == calls_.end()) continue;  // answered
    uint64_t call = it->second.call_id;
    calls_.erase(it);
    SimNode& n = nodes_.at(node);
    if (n.down) continue;
    n.replica->OnReply(call, Status::TimedOut("no answer (simulated)"), {}, now_);
    Collect(node);
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
  if (m.permissions) s += std::string(" perm=") + kPerm[static_cast<int>(*m.permissions)];
  if (m.ttl_ms) s += " ttl=" + std::to_string(*m.ttl_ms);
  if (m.hb_ttl_ms) s += " hb_ttl=" + std::to_string(*m.hb_ttl_ms);
  if (m.data) s += " data";
  if (m.opcode == Opcode::kIoRequest && m.version.value_or(0) != 0) s += " version";  // revalidating a kept copy
  if (m.status) s += std::string(" status=") + WireStatusName(*m.status);
  return s;
}

}  // namespace vshare
