// RequestCheck: what a child's request is, and whether it may be served at
// all, decided once where it enters (Replica::OnChildMessage), for one
// block or a range. Nothing from the wire is trusted: block numbers, counts
// and data sizes are checked against the volume before anything is looked
// up or split.
#pragma once

#include <cstdint>
#include <optional>

#include "core/message.h"

namespace vshare {

enum class RequestClass {
  kBlocks,       // an IO_REQUEST or FORWARD about blocks
  kBarrier,      // FLUSH without BLOCK_NUM: a sync barrier
  kWriterLease,  // LOCK without BLOCK_NUM: the writer lease
  kOther,        // anything else (CONNECT, HEARTBEAT, ...)
};
RequestClass Classify(const Message& m);

struct Refusal {
  WireStatus status;
  std::optional<ParamType> param;
};

// For a kBlocks request: nothing when it may be served, else the answer.
// `volume_id` is this node's number for the volume.
std::optional<Refusal> CheckBlockRequest(const Message& m, uint32_t volume_id, uint64_t block_count,
                                         uint32_t block_size);

}  // namespace vshare
