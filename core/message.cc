#include "core/message.h"

namespace vshare {

const char* OpcodeName(Opcode op) {
  switch (op) {
    case Opcode::kConnect: return "CONNECT";
    case Opcode::kDisconnect: return "DISCONNECT";
    case Opcode::kIoRequest: return "IO_REQUEST";
    case Opcode::kOkReply: return "OK_REPLY";
    case Opcode::kErrReply: return "ERR_REPLY";
    case Opcode::kInvalidate: return "INVALIDATE";
    case Opcode::kPush: return "PUSH";
    case Opcode::kHeartbeat: return "HEARTBEAT";
    case Opcode::kForward: return "FORWARD";
  }
  return "?";
}

const char* IoOpName(IoOp op) {
  switch (op) {
    case IoOp::kGet: return "GET";
    case IoOp::kPut: return "PUT";
    case IoOp::kFlush: return "FLUSH";
    case IoOp::kLock: return "LOCK";
    case IoOp::kRecover: return "RECOVER";
    case IoOp::kGetCookies: return "GET_COOKIES";
  }
  return "?";
}

const char* WireStatusName(WireStatus s) {
  switch (s) {
    case WireStatus::kInvalidHeader: return "INVALID_HEADER";
    case WireStatus::kBadParamId: return "BAD_PARAM_ID";
    case WireStatus::kBadParamLength: return "BAD_PARAM_LENGTH";
    case WireStatus::kBadParamValue: return "BAD_PARAM_VALUE";
    case WireStatus::kLoopDetected: return "LOOP_DETECTED";
    case WireStatus::kBadVerifier: return "BAD_VERIFIER";
    case WireStatus::kInRecovery: return "IN_RECOVERY";
    case WireStatus::kNotAuthorized: return "NOT_AUTHORIZED";
    case WireStatus::kNoSuchVolume: return "NO_SUCH_VOLUME";
    case WireStatus::kOutOfRange: return "OUT_OF_RANGE";
    case WireStatus::kBusy: return "BUSY";
  }
  return "?";
}

std::string Describe(const Message& m) {
  static const char* kPerm[] = {"NONE", "READ", "WRITE"};
  std::string s = OpcodeName(m.opcode);
  if (m.io_op) s += std::string("/") + IoOpName(*m.io_op);
  s += " xid=" + std::to_string(m.xid);
  if (m.volume_name) s += " name=" + *m.volume_name;
  if (m.volume_id) s += " vol=" + std::to_string(*m.volume_id);
  if (m.block_num) s += " block=" + std::to_string(*m.block_num);
  if (m.count) s += " count=" + std::to_string(*m.count);
  if (m.permissions && static_cast<uint16_t>(*m.permissions) <= 2)
    s += std::string(" perm=") + kPerm[static_cast<uint16_t>(*m.permissions)];
  if (m.ttl_ms) s += " ttl=" + std::to_string(*m.ttl_ms) + "ms";
  if (m.hb_ttl_ms) s += " hb_ttl=" + std::to_string(*m.hb_ttl_ms) + "ms";
  if (m.version) s += " version=" + std::to_string(*m.version);
  if (m.versions) s += " versions=" + std::to_string(m.versions->size());
  if (m.mask) s += " mask";
  if (m.flags & msg_flags::kMore) s += " more";
  if (m.data) s += " data=" + std::to_string(m.data->size()) + "B";
  if (m.status && static_cast<uint16_t>(*m.status) >= 1 && static_cast<uint16_t>(*m.status) <= kMaxWireStatus)
    s += std::string(" status=") + WireStatusName(*m.status);
  return s;
}

}  // namespace vshare
