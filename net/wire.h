// The wire codec: Messages to bytes and back, as pure functions. No socket,
// no clock, no allocation sized by the peer before that size is checked.
// The format, with field tables, is in doc/protocol.md.
//
// A frame is a 4-byte big-endian length, then that many bytes: a 28-byte
// header and, when the header's PARAMS flag is set, typed parameters ending
// with END_MSG.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/message.h"

namespace vshare::wire {

inline constexpr size_t kLengthPrefix = 4;
inline constexpr size_t kHeaderSize = 28;
inline constexpr size_t kMaxData = 16u << 20;             // one DATA parameter
inline constexpr size_t kMaxFrame = kMaxData + (128u << 10);  // after the length prefix
inline constexpr size_t kMaxName = 255;
inline constexpr size_t kMaxBlob = 4096;                  // VERIFIER, KEY, PARENT_LIST
inline constexpr size_t kMaxCookie = 256;
inline constexpr size_t kMaxErrValue = 64;
inline constexpr size_t kMaxParents = 16;
inline constexpr size_t kMaxRange = 8192;                 // COUNT: blocks in one request

// Why a frame was refused: the ERR_REPLY to send back (STATUS, ERR_PARAM,
// ERR_VALUE), and a sentence for the log.
struct DecodeError {
  WireStatus status = WireStatus::kInvalidHeader;
  uint16_t err_param = 0;
  std::vector<uint8_t> err_value;
  std::string what;
  // When the header itself was readable, the request's XID and originator,
  // so the reply can be matched to it.
  bool header_read = false;
  uint64_t xid = 0;
  Originator originator{};
};

enum class DecodeResult {
  kGood,      // *out holds the message; *consumed bytes were used
  kNeedMore,  // `in` holds only part of a frame; call again with more
  kBad,       // see *err. *consumed > 0: skip that many bytes and go on;
              // *consumed == 0: the framing is broken, close the connection
};

// When `owner` is given and holds `in`, DATA refers to it instead of being
// copied (the frame's buffer lives as long as any block cut from it).
DecodeResult Decode(std::span<const uint8_t> in, Message* out, size_t* consumed, DecodeError* err,
                    const Bytes* owner = nullptr);

// Appends one frame for `m` to *out. Sets the PARAMS flag when `m` has any
// parameter. Fields beyond the limits above are the caller's bug: the
// encoder refuses them (returns false, appends nothing) rather than send a
// frame every peer would reject.
bool Encode(const Message& m, std::vector<uint8_t>* out);
// The same frame in three pieces, so that DATA's bytes need not be copied:
// *head (appended to), then m.data's bytes, then *tail (replaced).
bool EncodeAround(const Message& m, std::vector<uint8_t>* head, std::vector<uint8_t>* tail);

// The ERR_REPLY that answers a refused frame.
Message ErrorReply(const DecodeError& err);

}  // namespace vshare::wire
