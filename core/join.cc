// Joining the tree (CONNECT), both ways: a child's CONNECT here, and ours to
// the parent. Each node gives its children its own volume ID and maps it
// back to its parent's ID on every request it forwards (001, Example One).
#include "core/log.h"
#include "core/replica.h"

namespace vshare {

bool Replica::MakeTable(uint64_t volume_size, uint32_t bs) {
  BlockTable::Options o;
  o.volume_size = volume_size;
  o.is_root = cfg_.is_root;
  o.keep_data = cfg_.keep_data;
  const uint64_t blocks = (volume_size + bs - 1) / bs;
  const uint32_t ways = std::max<uint32_t>(1, cfg_.cache_ways);
  // Never smaller than one set, never more than the volume.
  const uint64_t bytes = std::max<uint64_t>(cfg_.cache_bytes, uint64_t{bs} * ways);
  if (!CacheGeometry::ForBytes(bytes, bs, ways, &o.geometry).ok()) return false;
  o.geometry.hash = cfg_.cache_hash;
  o.geometry.CapAt(std::max<uint64_t>(blocks, 1));
  table_ = std::make_unique<BlockTable>(o);
  ranges_.set_block_size(bs);
  return true;
}

void Replica::Start(Time now) {
  now_ = now;
  if (!connected_) ConnectUpward(cfg_.self, cfg_.max_hops);
  AfterEvent();
}

void Replica::HandleConnect(LinkId child, const Message& m, Time now) {
  // A root without authority (a standby) takes no children: they try the
  // next place they know.
  if (!HasAuthority(now)) return SendToChild(child, ErrorReply(m.xid, WireStatus::kInRecovery));
  if (!m.volume_name) return SendToChild(child, ErrorReply(m.xid, WireStatus::kBadParamValue, ParamType::kVolumeName));
  if (*m.volume_name != cfg_.volume_name) return SendToChild(child, ErrorReply(m.xid, WireStatus::kNoSuchVolume));
  const uint32_t flags = m.connect_flags.value_or(connect_flags::kAsyncWrite);
  if ((flags & connect_flags::kSyncWrite) && (flags & connect_flags::kAsyncWrite))
    return SendToChild(child, ErrorReply(m.xid, WireStatus::kBadParamValue, ParamType::kConnectFlags));
  // Our own join came back round: the parent chain is a cycle.
  if (m.originator == cfg_.self) return SendToChild(child, ErrorReply(m.xid, WireStatus::kLoopDetected));
  // A grant to it must fit in a slot's holders.
  if (children_.IndexOf(child) == kNoIndex) {
    LogWarning("volume " + cfg_.volume_name + ": refusing a child: " + std::to_string(BlockTable::kMaxChildren) +
               " children already (join a proxy below this node instead)");
    return SendToChild(child, ErrorReply(m.xid, WireStatus::kBusy));
  }
  children_.SetFlags(child, flags);
  if (connected_) return ReplyConnect(child, m.xid);
  if (m.hops_left == 0) return SendToChild(child, ErrorReply(m.xid, WireStatus::kLoopDetected));
  // Example One, step 2: learn the volume from our own parent first.
  waiting_connects_.push_back({child, m.xid});
  ConnectUpward(m.originator, static_cast<uint8_t>(m.hops_left - 1));
}

void Replica::ConnectUpward(const Originator& originator, uint8_t hops) {
  if (connecting_ || connected_ || cfg_.is_root) return;
  connecting_ = true;
  Message up;
  up.opcode = Opcode::kConnect;
  up.volume_name = cfg_.volume_name;
  up.protocol_version = kCurrentProtocolVersion;
  up.connect_flags = cfg_.connect_flags;
  up.originator = originator;
  up.hops_left = hops;
  CallParent(std::move(up), Call{CallKind::kConnect});
}

void Replica::ReplyConnect(LinkId child, uint64_t xid) {
  Message r = ReplyFor(xid);
  r.volume_name = cfg_.volume_name;
  r.volume_id = cfg_.volume_id;  // our own number: the child's requests map back through us
  r.hb_ttl_ms = hb_ttl_ms_;
  r.connect_flags = cfg_.is_root ? connect_flags::kIsRoot : connect_flags::kIsProxy;
  if (!cfg_.is_root && !parent_address_.empty()) {  // where the child goes if we fail: our parent, then its
    std::vector<std::string> list{parent_address_};
    for (const std::string& a : upstream_)
      if (list.size() < 16) list.push_back(a);
    r.parent_list = std::move(list);
  }
  r.volume_size = table_->volume_size();
  r.block_size = table_->block_size();
  r.protocol_version = kCurrentProtocolVersion;
  SendToChild(child, std::move(r));
}

void Replica::Joined(const Call& call, const Status& st, const Message& reply, Time now) {
  connecting_ = false;
  connect_error_.clear();
  connect_refusal_.reset();
  const bool ok = st.ok() && reply.opcode == Opcode::kOkReply;
  if (ok && reply.volume_id && reply.volume_size && reply.block_size) {
    if (!table_) {
      if (!MakeTable(*reply.volume_size, *reply.block_size)) {
        connect_error_ = "cannot make a block table for block size " + std::to_string(*reply.block_size);
        connect_refusal_.reset();
      }
    } else if (table_->volume_size() != *reply.volume_size || table_->block_size() != *reply.block_size) {
      // Another volume by the same name: what we hold would be wrong there.
      connect_error_ = "the parent's volume " + cfg_.volume_name + " is not the one this node joined (" +
                       std::to_string(*reply.volume_size) + " bytes in blocks of " + std::to_string(*reply.block_size) +
                       ", not " + std::to_string(table_->volume_size()) + " in " + std::to_string(table_->block_size()) + ")";
      connect_refusal_ = WireStatus::kNoSuchVolume;
    }
  }
  if (ok && reply.volume_id && table_ && connect_error_.empty()) {
    connected_ = true;
    parent_volume_id_ = *reply.volume_id;
    upstream_ = reply.parent_list.value_or(std::vector<std::string>{});
    if (reply.hb_ttl_ms) {
      hb_ttl_ms_ = std::min(hb_ttl_ms_, *reply.hb_ttl_ms);  // what we pass down, at most
      parent_lease_.Renewed(call.sent, *reply.hb_ttl_ms);
    }
    parent_lease_.Joined(now, std::chrono::milliseconds(heartbeat_ms()));
    if (rejoining_) {
      rejoining_ = false;
      ++rejoins_;
      ResetAfterRejoin(now);
    }
  } else {
    if (connect_error_.empty()) {
      connect_error_ = !st.ok() ? st.message()
                       : reply.status ? std::string("the parent answered ") + WireStatusName(*reply.status)
                       : reply.opcode == Opcode::kOkReply ? "the parent did not say what the volume is"
                                                          : "the parent refused";
      if (st.ok() && reply.status) connect_refusal_ = *reply.status;
    }
    LogWarning("volume " + cfg_.volume_name + ": CONNECT to the parent failed: " + connect_error_);
  }
  if (connected_) {  // requests made while connecting may go now
    connect_error_.clear();
    connect_refusal_.reset();
    ParkAll();  // once per join: every queue looks again
    PumpAll(now);
    writer_lock_.Pump();
  }
  for (const PendingConnect& pc : std::exchange(waiting_connects_, {})) {
    if (connected_) {
      ReplyConnect(pc.child, pc.xid);
    } else {
      SendToChild(pc.child, ErrorReply(pc.xid, st.ok() ? reply.status.value_or(WireStatus::kNoSuchVolume) : WireStatus::kBusy));
    }
  }
}

}  // namespace vshare
