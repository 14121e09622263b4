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
  for (LocalDone& d : n.replica->TakeLocalDone()) {
    n.done[d.op] = d.status;
    if (!d.data.empty()) n.reads[d.op] = d.data;
    if (on_done) on_done(name, d);
  }
  for (Outgoing& o : n.replica->TakeOutbox()) {
    Delivery d;
    d.from = name;
    d.msg = std::move(o.msg);
    d.to = o.to_parent ? n.parent : n.children.at(o.child);
    d.from_parent = !o.to_parent;
    if (o.kind == Outgoing::Kind::kCall) {
      d.msg.xid = next_xid_++;
      calls_[{name, d.msg.xid}] = o.call_id;
    }
    in_flight_.emplace(now_ + Latency(name, d.to), std::move(d));
  }
}

void SimNet::Deliver(const Delivery& d) {
  log_.push_back(d.from + "->" + d.to + " " + Summary(d.msg));
  SimNode& n = nodes_.at(d.to);
  const bool is_reply = d.msg.opcode == Opcode::kOkReply || d.msg.opcode == Opcode::kErrReply;
  if (is_reply) {
    auto it = calls_.find({d.to, d.msg.xid});
    if (it != calls_.end()) {
      uint64_t call = it->second;
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

void SimNet::Run(size_t limit) {
  for (size_t i = 0; i < limit && !in_flight_.empty(); ++i) {
    auto it = in_flight_.begin();
    Delivery d = std::move(it->second);
    if (it->first > now_) now_ = it->first;
    in_flight_.erase(it);
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
  if (m.status) s += std::string(" status=") + WireStatusName(*m.status);
  return s;
}

}  // namespace vshare
