// RangeAdapter: ranges on the wire, blocks in the engine.
//
// The engine decides block by block (one queue per block, in arrival
// order), which keeps the protocol's rules simple and the primary source's
// examples exact. On the wire, neighbouring blocks travel together:
//
//  - Out: consecutive calls to one destination that differ only in their
//    block (the same request for blocks b, b+1, ...) become one range
//    request: BLOCK_NUM, COUNT, DATA for all of them, VERSIONS when any
//    carries one. Answers to the blocks of a range request from a child (or
//    an INVALIDATE range from the parent) become reply parts: each answers
//    a run of the range (BLOCK_NUM, COUNT), carries the MORE flag unless it
//    is the last, and is sent as soon as the engine has answered that run,
//    so a grant is never held back behind a slower block.
//  - In: a range request is split into one request per block, under
//    private XIDs, before the engine sees it; each reply part to a range
//    call is split into the answers of the calls it was made of.
//
// A message about one block passes through unchanged. Not thread-safe: the
// engine's thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <unordered_map>
#include <vector>

#include "core/effects.h"
#include "core/message.h"
#include "core/status.h"

namespace vshare {

class RangeAdapter {
 public:
  // At most this many bytes of blocks go in one request.
  static constexpr uint64_t kMaxRangeBytes = 4u << 20;

  explicit RangeAdapter(uint32_t block_size = 4096) : block_size_(block_size) {}
  void set_block_size(uint32_t bs) { block_size_ = bs; }
  uint32_t max_blocks() const;

  // A request about `m.blocks()` > 1 blocks, from child `from` (or, with
  // to_parent, the parent's INVALIDATE): one message per block, in block
  // order. `m` has been checked (core/request_check.h).
  std::vector<Message> Split(bool from_parent, LinkId from, const Message& m);

  // Merges what the engine queued (see above). `new_call_id` names a range
  // call made of several.
  std::vector<Outgoing> Merge(std::vector<Outgoing> out, const std::function<uint64_t()>& new_call_id);

  // Split in two steps, for a request served partly on the spot: Open
  // registers it and returns its key; Request(key, m, i) is the per-block
  // request for block i (what Split returns), answered as usual.
  uint64_t Open(bool from_parent, LinkId from, const Message& m);
  Message Request(uint64_t key, const Message& m, uint32_t i) const;
  // A part answering blocks [i, i + count) of open request `key` at once,
  // built whole by the engine: give it as a kSend to the requester, with
  // XID PartXid(key, i) and COUNT `count` (even when 1), and Merge makes it
  // a reply part of the request (MORE unless it is the last).
  static uint64_t PartXid(uint64_t key, uint32_t i) { return kPrivate | (key << kIndexBits) | i; }

  // For the answer to block `xid` of a range request being served: where
  // its bytes go, in one buffer with the rest of the range, so that the
  // answer's parts need no copying. Null for any other XID.
  uint8_t* AnswerBuffer(uint64_t xid, Bytes* slice);
  // The same for block i of open request `key`; and the bytes of blocks
  // [i, i + count) of that buffer, once written.
  uint8_t* AnswerBuffer(uint64_t key, uint32_t i, Bytes* slice);
  Bytes AnswerSlice(uint64_t key, uint32_t i, uint32_t count) const;

  // Whether `call_id` is a range call made by Merge.
  bool IsRangeCall(uint64_t call_id) const { return calls_.count(call_id) > 0; }
  // The answers one reply part (or the call's failure) gives the calls it
  // was made of: (their call id, their status, their reply).
  struct Answer {
    uint64_t call_id;
    Status status;
    Message reply;
  };
  // With `granted`, the blocks of an OK part with DATA for each (the usual
  // answer to a GET range), or with no DATA at all (to a LOCK range), come
  // out there instead, without a Message each; BlockReply makes one when
  // the caller needs it after all.
  struct Granted {
    uint64_t call_id;
    uint64_t block;
    std::optional<uint64_t> version;
    Bytes data;  // empty: the part carried no DATA
  };
  std::vector<Answer> SplitReply(uint64_t call_id, const Status& st, const Message& reply,
                                 std::vector<Granted>* granted = nullptr);
  // The answer to block `block` alone, cut from reply part `part`.
  static Message BlockReply(const Message& part, uint64_t block, std::optional<uint64_t> version,
                            std::optional<Bytes> data);

  // Answers still owed to ranges from children (for tests).
  size_t open_splits() const { return splits_.size(); }

 private:
  struct OpenSplit {
    bool to_parent = false;
    LinkId child = 0;
    uint64_t xid = 0;  // of the range request
    uint64_t first = 0;
    uint32_t count = 0;
    uint32_t remaining = 0;         // blocks not answered yet
    std::vector<bool> answered;     // by block: a second answer for one is dropped
    Bytes answers;  // the range's bytes, once the first block's are written
    uint8_t* writable = nullptr;
  };
  struct RangeCall {
    uint64_t first = 0;
    std::vector<uint64_t> calls;  // by block, from `first`
    std::vector<bool> answered;
    uint32_t remaining = 0;
  };
  static constexpr uint64_t kPrivate = uint64_t{1} << 63;
  static constexpr int kIndexBits = 14;  // COUNT <= 8192
  static uint64_t SplitOf(uint64_t xid) { return (xid & ~kPrivate) >> kIndexBits; }
  bool IsPrivate(uint64_t xid) const { return (xid & kPrivate) && splits_.count(SplitOf(xid)); }

  uint32_t block_size_;
  uint64_t next_split_ = 1;
  std::unordered_map<uint64_t, OpenSplit> splits_;  // by the XID's upper bits
  std::unordered_map<uint64_t, RangeCall> calls_;
};

}  // namespace vshare
