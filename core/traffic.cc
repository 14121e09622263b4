#include "core/traffic.h"

#include "core/request_check.h"

namespace vshare {

namespace {

uint64_t DataBytes(const Message& m) { return m.data ? m.data->size() : 0; }

bool IsRequest(const Message& m) { return m.opcode != Opcode::kOkReply && m.opcode != Opcode::kErrReply; }

}  // namespace

std::string RequestKind(const Message& m) {
  if (m.opcode != Opcode::kIoRequest || !m.io_op) return OpcodeName(m.opcode);
  switch (Classify(m)) {
    case RequestClass::kBarrier: return "SYNC";
    case RequestClass::kWriterLease: return "LEASE";
    default: return IoOpName(*m.io_op);
  }
}

void TrafficCounters::FromParent(const Message& m) {
  std::lock_guard lock(mu_);
  s_.bytes_from_parent += DataBytes(m);
  if (m.opcode == Opcode::kInvalidate) ++s_.invalidations_received;
  if (m.opcode == Opcode::kPush) ++s_.pushes_received;
  if (m.opcode == Opcode::kErrReply) ++s_.errors_received[m.status ? WireStatusName(*m.status) : "NONE"];
}

void TrafficCounters::ToParent(const Message& m) {
  std::lock_guard lock(mu_);
  s_.bytes_to_parent += DataBytes(m);
  if (IsRequest(m)) {
    const std::string kind = RequestKind(m);
    ++s_.sent[kind];
    if (m.block_num) s_.sent_blocks[kind] += m.blocks();
  }
}

void TrafficCounters::FromChild(const Message& m) {
  std::lock_guard lock(mu_);
  s_.bytes_from_children += DataBytes(m);
  if (IsRequest(m)) {
    const std::string kind = RequestKind(m);
    ++s_.served[kind];
    if (m.block_num) s_.served_blocks[kind] += m.blocks();
  }
}

void TrafficCounters::ToChild(const Message& m) {
  std::lock_guard lock(mu_);
  s_.bytes_to_children += DataBytes(m);
  if (m.opcode == Opcode::kInvalidate) ++s_.invalidations_sent;
  if (m.opcode == Opcode::kErrReply) ++s_.errors_sent[m.status ? WireStatusName(*m.status) : "NONE"];
}

void TrafficCounters::CallFailed() {
  std::lock_guard lock(mu_);
  ++s_.errors_received["NO_REPLY"];
}

TrafficSnapshot TrafficCounters::Snapshot() const {
  std::lock_guard lock(mu_);
  return s_;
}

void TrafficCounters::Reset() {
  std::lock_guard lock(mu_);
  s_ = {};
}

}  // namespace vshare
