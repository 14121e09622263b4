// Message: one protocol message between a child and its parent, as plain
// data. The coherence logic produces and consumes Messages; net/wire.h turns
// them into bytes and back. The wire format is documented in doc/protocol.md.
//
// Field names follow the protocol's parameters; a parameter absent from a
// message is an empty optional. Nothing here touches a socket.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/bytes.h"

namespace vshare {

inline constexpr uint16_t kCurrentProtocolVersion = 1;

enum class Opcode : uint8_t {
  kConnect = 1,
  kDisconnect = 2,
  kIoRequest = 3,
  kOkReply = 4,
  kErrReply = 5,
  kInvalidate = 6,
  kPush = 7,
  kHeartbeat = 8,
  kForward = 9,
};
inline constexpr uint8_t kMaxOpcode = 9;

// The kind of an IO_REQUEST (the IO_OP parameter).
enum class IoOp : uint8_t {
  kGet = 1,
  kPut = 2,
  kFlush = 3,
  kLock = 4,
  kRecover = 5,
  kGetCookies = 6,
};
inline constexpr uint8_t kMaxIoOp = 6;

// Header flags.
namespace msg_flags {
inline constexpr uint16_t kForceSync = 1 << 0;  // the write must reach the root's store
inline constexpr uint16_t kParams = 1 << 1;     // parameters follow the header
inline constexpr uint16_t kRecoveryOp = 1 << 2; // part of recovery after a failure
// A reply that answers part of a range request: more parts follow under the
// same XID. The last part has it clear.
inline constexpr uint16_t kMore = 1 << 3;
inline constexpr uint16_t kKnown = kForceSync | kParams | kRecoveryOp | kMore;
}  // namespace msg_flags

// CONNECT_FLAGS bits: options asked for by a child, facts told by a parent.
namespace connect_flags {
inline constexpr uint32_t kSyncWrite = 1 << 0;
inline constexpr uint32_t kAsyncWrite = 1 << 1;
inline constexpr uint32_t kIsRoot = 1 << 2;
inline constexpr uint32_t kIsProxy = 1 << 3;
inline constexpr uint32_t kSharedWriters = 1 << 4;
// Between the two roots of a volume (doc/failover.md): a CONNECT with
// kIsRoot is a root's ask for a root lease; the answer has kIsRoot when the
// peer is active, kStandby when it is a standby granting the lease in
// HB_TTL.
inline constexpr uint32_t kStandby = 1 << 5;
inline constexpr uint32_t kKnown = kSyncWrite | kAsyncWrite | kIsRoot | kIsProxy | kSharedWriters | kStandby;
}  // namespace connect_flags

// STATUS values of ERR_REPLY (0 is never sent).
enum class WireStatus : uint16_t {
  kInvalidHeader = 1,
  kBadParamId = 2,
  kBadParamLength = 3,
  kBadParamValue = 4,
  kLoopDetected = 5,
  kBadVerifier = 6,
  kInRecovery = 7,
  kNotAuthorized = 8,
  kNoSuchVolume = 9,
  kOutOfRange = 10,
  kBusy = 11,
};
inline constexpr uint16_t kMaxWireStatus = 11;
const char* WireStatusName(WireStatus s);

// Parameter type numbers on the wire.
enum class ParamType : uint16_t {
  kEndMsg = 0,
  kVolumeName = 1,
  kVolumeId = 2,
  kConnectFlags = 3,
  kBlockNum = 4,
  kPermissions = 5,
  kData = 6,
  kVerifier = 7,
  kKey = 8,
  kTtl = 9,
  kHbTtl = 10,
  kStatus = 11,
  kErrParam = 12,
  kErrValue = 13,
  kIoOp = 14,
  kProtocolVersion = 15,
  kParentList = 16,
  kVersion = 17,
  kCookie = 18,
  kVolumeSize = 19,
  kBlockSize = 20,
  kCount = 21,
  kVersions = 22,
  kMask = 23,
};
inline constexpr uint16_t kMaxParamType = 23;

// Permission values of the PERMISSIONS parameter.
enum class WirePerm : uint16_t { kNone = 0, kRead = 1, kWrite = 2 };

// An originator address: IPv6, or IPv4 mapped into IPv6 (::ffff:a.b.c.d).
using Originator = std::array<uint8_t, 16>;

struct Message {
  // Header.
  Opcode opcode = Opcode::kHeartbeat;
  uint8_t hops_left = 0;
  uint16_t flags = 0;  // kParams is set by the encoder, never needed here
  Originator originator{};
  uint64_t xid = 0;

  // Parameters.
  std::optional<std::string> volume_name;
  std::optional<uint32_t> volume_id;
  std::optional<uint32_t> connect_flags;
  std::optional<uint64_t> block_num;
  std::optional<WirePerm> permissions;
  // A range: `count` blocks from block_num (absent: one block). DATA then
  // holds the blocks in order, or, with MASK, only those whose bit is set.
  std::optional<uint32_t> count;
  std::optional<Bytes> data;
  std::optional<std::vector<uint8_t>> verifier;
  std::optional<std::vector<uint8_t>> key;
  std::optional<uint32_t> ttl_ms;
  std::optional<uint32_t> hb_ttl_ms;
  std::optional<WireStatus> status;
  std::optional<uint16_t> err_param;
  std::optional<std::vector<uint8_t>> err_value;
  std::optional<IoOp> io_op;
  std::optional<uint16_t> protocol_version;
  std::optional<std::vector<std::string>> parent_list;  // "host:port" entries, nearest first
  std::optional<uint64_t> version;
  std::optional<std::vector<uint8_t>> cookie;
  std::optional<uint64_t> volume_size;
  std::optional<uint32_t> block_size;
  std::optional<std::vector<uint64_t>> versions;  // one per block of the range
  std::optional<std::vector<uint8_t>> mask;       // bit i (LSB first): block_num + i is in DATA

  // The number of blocks a request or reply is about: 1 without COUNT.
  uint32_t blocks() const { return count.value_or(1); }

  bool operator==(const Message&) const = default;
};

// One line for logs: "IO_REQUEST/GET xid=7 vol=32002 block=7 perm=READ".
std::string Describe(const Message& m);
const char* OpcodeName(Opcode op);
const char* IoOpName(IoOp op);

}  // namespace vshare
