#include "core/request_check.h"

namespace vshare {

RequestClass Classify(const Message& m) {
  if (m.opcode == Opcode::kForward) return RequestClass::kBlocks;
  if (m.opcode != Opcode::kIoRequest) return RequestClass::kOther;
  if (!m.block_num && !m.data && m.io_op) {
    if (*m.io_op == IoOp::kFlush) return RequestClass::kBarrier;
    if (*m.io_op == IoOp::kLock) return RequestClass::kWriterLease;
  }
  return RequestClass::kBlocks;
}

std::optional<Refusal> CheckBlockRequest(const Message& m, uint32_t volume_id, uint64_t block_count,
                                         uint32_t block_size) {
  if (!m.volume_id || *m.volume_id != volume_id) return Refusal{WireStatus::kNoSuchVolume, std::nullopt};
  if (m.opcode == Opcode::kIoRequest) {
    if (!m.io_op) return Refusal{WireStatus::kBadParamValue, ParamType::kIoOp};
    if (*m.io_op == IoOp::kGetCookies) return Refusal{WireStatus::kBadParamValue, ParamType::kIoOp};
  }
  if (!m.block_num) return Refusal{WireStatus::kBadParamValue, ParamType::kBlockNum};
  const uint64_t n = m.blocks();
  if (*m.block_num >= block_count || n > block_count - *m.block_num)
    return Refusal{WireStatus::kOutOfRange, ParamType::kBlockNum};
  if (m.mask) return Refusal{WireStatus::kBadParamValue, ParamType::kMask};  // only answers carry one
  if (m.versions && m.versions->size() != n) return Refusal{WireStatus::kBadParamLength, ParamType::kVersions};
  const bool needs_data = m.opcode == Opcode::kIoRequest &&
                          (*m.io_op == IoOp::kPut || *m.io_op == IoOp::kFlush || *m.io_op == IoOp::kRecover);
  if ((needs_data && !m.data) || (m.data && m.data->size() != n * block_size))
    return Refusal{WireStatus::kBadParamLength, ParamType::kData};
  return std::nullopt;
}

}  // namespace vshare
