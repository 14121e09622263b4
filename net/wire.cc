#include "net/wire.h"

#include <cstring>

namespace vshare::wire {

namespace {

// Big-endian readers over a bounded span.
uint64_t ReadBE(const uint8_t* p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v = (v << 8) | p[i];
  return v;
}

void WriteBE(std::vector<uint8_t>* out, uint64_t v, size_t n) {
  for (size_t i = n; i-- > 0;) out->push_back(static_cast<uint8_t>(v >> (8 * i)));
}

std::vector<uint8_t> BE(uint64_t v, size_t n) {
  std::vector<uint8_t> out;
  WriteBE(&out, v, n);
  return out;
}

// The fixed size of a parameter's value, or 0 for variable-size ones.
size_t FixedSize(ParamType t) {
  switch (t) {
    case ParamType::kVolumeId:
    case ParamType::kConnectFlags:
    case ParamType::kTtl:
    case ParamType::kHbTtl:
    case ParamType::kBlockSize:
    case ParamType::kCount: return 4;
    case ParamType::kBlockNum:
    case ParamType::kVersion:
    case ParamType::kVolumeSize: return 8;
    case ParamType::kPermissions:
    case ParamType::kStatus:
    case ParamType::kErrParam:
    case ParamType::kProtocolVersion: return 2;
    case ParamType::kIoOp: return 1;
    default: return 0;
  }
}

// The largest value a variable-size parameter may carry, and the smallest.
size_t MaxSize(ParamType t) {
  switch (t) {
    case ParamType::kVolumeName: return kMaxName;
    case ParamType::kData: return kMaxData;
    case ParamType::kVerifier:
    case ParamType::kKey:
    case ParamType::kParentList: return kMaxBlob;
    case ParamType::kCookie: return kMaxCookie;
    case ParamType::kErrValue: return kMaxErrValue;
    case ParamType::kVersions: return 8 * kMaxRange;
    case ParamType::kMask: return kMaxRange / 8;
    case ParamType::kEndMsg: return 0;
    default: return FixedSize(t);
  }
}
size_t MinSize(ParamType t) { return t == ParamType::kVolumeName ? 1 : FixedSize(t); }

class Parser {
 public:
  Parser(Message* out, DecodeError* err, const Bytes* owner, std::span<const uint8_t> in)
      : m_(out), err_(err), owner_(owner), in_(in) {}

  bool Fail(WireStatus st, uint16_t param, std::vector<uint8_t> value, std::string what) {
    err_->status = st;
    err_->err_param = param;
    err_->err_value = std::move(value);
    err_->what = std::move(what);
    return false;
  }

  bool Header(const uint8_t* p) {
    const uint8_t op = p[0];
    m_->hops_left = p[1];
    m_->flags = static_cast<uint16_t>(ReadBE(p + 2, 2));
    std::memcpy(m_->originator.data(), p + 4, 16);
    m_->xid = ReadBE(p + 20, 8);
    err_->header_read = true;
    err_->xid = m_->xid;
    err_->originator = m_->originator;
    if (op == 0 || op > kMaxOpcode)
      return Fail(WireStatus::kInvalidHeader, 0, {op}, "unknown opcode " + std::to_string(op));
    if (m_->flags & ~msg_flags::kKnown)
      return Fail(WireStatus::kInvalidHeader, 0, BE(m_->flags & ~msg_flags::kKnown, 2),
                  "unknown header flags " + std::to_string(m_->flags & ~msg_flags::kKnown));
    m_->opcode = static_cast<Opcode>(op);
    m_->flags &= static_cast<uint16_t>(~msg_flags::kParams);
    return true;
  }

  bool Param(ParamType t, const uint8_t* v, size_t n) {
    const uint16_t id = static_cast<uint16_t>(t);
    auto bad_value = [&](std::vector<uint8_t> value, const std::string& why) {
      return Fail(WireStatus::kBadParamValue, id, std::move(value), "parameter " + std::to_string(id) + ": " + why);
    };
    if (seen_[id]) return bad_value({}, "given twice");
    seen_[id] = true;
    switch (t) {
      case ParamType::kVolumeName: {
        std::string name(reinterpret_cast<const char*>(v), n);
        if (name.find('\0') != std::string::npos) return bad_value({}, "volume name contains NUL");
        m_->volume_name = std::move(name);
        return true;
      }
      case ParamType::kVolumeId: m_->volume_id = static_cast<uint32_t>(ReadBE(v, 4)); return true;
      case ParamType::kConnectFlags: {
        uint32_t f = static_cast<uint32_t>(ReadBE(v, 4));
        if (f & ~connect_flags::kKnown) return bad_value(BE(f & ~connect_flags::kKnown, 4), "unknown connect flags");
        m_->connect_flags = f;
        return true;
      }
      case ParamType::kBlockNum: m_->block_num = ReadBE(v, 8); return true;
      case ParamType::kPermissions: {
        uint16_t p = static_cast<uint16_t>(ReadBE(v, 2));
        if (p > 2) return bad_value(BE(p, 2), "permissions must be 0, 1 or 2");
        m_->permissions = static_cast<WirePerm>(p);
        return true;
      }
      case ParamType::kData:
        if (owner_ && owner_->data() <= in_.data() && in_.data() + in_.size() <= owner_->data() + owner_->size())
          m_->data = owner_->Slice(static_cast<size_t>(v - owner_->data()), n);
        else
          m_->data = Bytes::Copy({v, n});
        return true;
      case ParamType::kVerifier: m_->verifier.emplace(v, v + n); return true;
      case ParamType::kKey: m_->key.emplace(v, v + n); return true;
      case ParamType::kTtl: m_->ttl_ms = static_cast<uint32_t>(ReadBE(v, 4)); return true;
      case ParamType::kHbTtl: m_->hb_ttl_ms = static_cast<uint32_t>(ReadBE(v, 4)); return true;
      case ParamType::kStatus: {
        uint16_t s = static_cast<uint16_t>(ReadBE(v, 2));
        if (s == 0 || s > kMaxWireStatus) return bad_value(BE(s, 2), "unknown status");
        m_->status = static_cast<WireStatus>(s);
        return true;
      }
      case ParamType::kErrParam: m_->err_param = static_cast<uint16_t>(ReadBE(v, 2)); return true;
      case ParamType::kErrValue: m_->err_value.emplace(v, v + n); return true;
      case ParamType::kIoOp: {
        if (v[0] == 0 || v[0] > kMaxIoOp) return bad_value({v[0]}, "unknown IO_REQUEST kind");
        m_->io_op = static_cast<IoOp>(v[0]);
        return true;
      }
      case ParamType::kProtocolVersion: m_->protocol_version = static_cast<uint16_t>(ReadBE(v, 2)); return true;
      case ParamType::kParentList: {
        std::vector<std::string> parents;
        std::string all(reinterpret_cast<const char*>(v), n);
        size_t start = 0;
        while (start < all.size()) {
          size_t end = all.find('\n', start);
          if (end == std::string::npos) end = all.size();
          if (end == start || all.find('\0', start) < end) return bad_value({}, "empty or malformed parent entry");
          if (parents.size() == kMaxParents) return bad_value({}, "too many parents");
          parents.push_back(all.substr(start, end - start));
          start = end + 1;
        }
        m_->parent_list = std::move(parents);
        return true;
      }
      case ParamType::kVersion: m_->version = ReadBE(v, 8); return true;
      case ParamType::kCookie: m_->cookie.emplace(v, v + n); return true;
      case ParamType::kVolumeSize: m_->volume_size = ReadBE(v, 8); return true;
      case ParamType::kBlockSize: {
        uint32_t bs = static_cast<uint32_t>(ReadBE(v, 4));
        if (bs < 512 || bs > (1u << 20) || (bs & (bs - 1)) != 0) return bad_value(BE(bs, 4), "bad block size");
        m_->block_size = bs;
        return true;
      }
      case ParamType::kCount: {
        const uint32_t c = static_cast<uint32_t>(ReadBE(v, 4));
        if (c == 0 || c > kMaxRange) return bad_value(BE(c, 4), "count must be from 1 to " + std::to_string(kMaxRange));
        m_->count = c;
        return true;
      }
      case ParamType::kVersions: {
        if (n % 8 != 0) return Fail(WireStatus::kBadParamLength, id, BE(n, 4), "versions must be 8 bytes each");
        std::vector<uint64_t> vs(n / 8);
        for (size_t i = 0; i < vs.size(); ++i) vs[i] = ReadBE(v + 8 * i, 8);
        m_->versions = std::move(vs);
        return true;
      }
      case ParamType::kMask: m_->mask.emplace(v, v + n); return true;
      case ParamType::kEndMsg: return true;
    }
    return true;
  }

  // Parses the parameter list in [p, end): it must end with END_MSG exactly
  // at `end`.
  bool Params(const uint8_t* p, const uint8_t* end) {
    while (true) {
      if (end - p < 6) return Fail(WireStatus::kBadParamLength, 0, {}, "parameter list ends without END_MSG");
      const uint16_t id = static_cast<uint16_t>(ReadBE(p, 2));
      const uint64_t len = ReadBE(p + 2, 4);
      p += 6;
      if (id > kMaxParamType) return Fail(WireStatus::kBadParamId, id, {}, "unknown parameter " + std::to_string(id));
      const ParamType t = static_cast<ParamType>(id);
      if (len > static_cast<uint64_t>(end - p))
        return Fail(WireStatus::kBadParamLength, id, BE(len, 4), "parameter " + std::to_string(id) + " runs past the frame");
      if (len < MinSize(t) || len > MaxSize(t))
        return Fail(WireStatus::kBadParamLength, id, BE(len, 4),
                    "parameter " + std::to_string(id) + " has length " + std::to_string(len));
      if (t == ParamType::kEndMsg) {
        if (p != end) return Fail(WireStatus::kBadParamLength, 0, {}, "bytes after END_MSG");
        return true;
      }
      if (!Param(t, p, static_cast<size_t>(len))) return false;
      p += len;
    }
  }

 private:
  Message* m_;
  DecodeError* err_;
  const Bytes* owner_;
  std::span<const uint8_t> in_;
  bool seen_[kMaxParamType + 1] = {};
};

void PutParam(std::vector<uint8_t>* out, ParamType t, const uint8_t* v, size_t n) {
  WriteBE(out, static_cast<uint16_t>(t), 2);
  WriteBE(out, n, 4);
  out->insert(out->end(), v, v + n);
}
void PutInt(std::vector<uint8_t>* out, ParamType t, uint64_t v) {
  auto bytes = BE(v, FixedSize(t));
  PutParam(out, t, bytes.data(), bytes.size());
}
template <typename Buf>
void PutBytes(std::vector<uint8_t>* out, ParamType t, const Buf& v) {
  PutParam(out, t, v.data(), v.size());
}

bool WithinLimits(const Message& m) {
  auto fits = [](const auto& opt, size_t max, size_t min = 0) {
    return !opt || (opt->size() <= max && opt->size() >= min);
  };
  if (m.count && (*m.count == 0 || *m.count > kMaxRange)) return false;
  if (m.versions && m.versions->size() > kMaxRange) return false;
  if (!fits(m.mask, kMaxRange / 8)) return false;
  if (!fits(m.volume_name, kMaxName, 1) || !fits(m.data, kMaxData) || !fits(m.verifier, kMaxBlob) ||
      !fits(m.key, kMaxBlob) || !fits(m.cookie, kMaxCookie) || !fits(m.err_value, kMaxErrValue))
    return false;
  if (m.parent_list) {
    if (m.parent_list->size() > kMaxParents) return false;
    size_t total = 0;
    for (const std::string& p : *m.parent_list) {
      if (p.empty() || p.find('\n') != std::string::npos) return false;
      total += p.size() + 1;
    }
    if (total > kMaxBlob + 1) return false;
  }
  return static_cast<uint8_t>(m.opcode) >= 1 && static_cast<uint8_t>(m.opcode) <= kMaxOpcode &&
         (m.flags & ~msg_flags::kKnown) == 0;
}

}  // namespace

DecodeResult Decode(std::span<const uint8_t> in, Message* out, size_t* consumed, DecodeError* err,
                    const Bytes* owner) {
  *consumed = 0;
  *err = DecodeError{};
  if (in.size() < kLengthPrefix) return DecodeResult::kNeedMore;
  const uint64_t len = ReadBE(in.data(), 4);
  // The length is checked before anything is buffered for it.
  if (len < kHeaderSize || len > kMaxFrame) {
    err->status = WireStatus::kInvalidHeader;
    err->err_value = BE(len, 4);
    err->what = "frame length " + std::to_string(len) + " is outside " + std::to_string(kHeaderSize) + ".." +
                std::to_string(kMaxFrame);
    return DecodeResult::kBad;
  }
  if (in.size() < kLengthPrefix + len) return DecodeResult::kNeedMore;
  *consumed = kLengthPrefix + static_cast<size_t>(len);

  Message m;
  Parser parser(&m, err, owner, in);
  const uint8_t* frame = in.data() + kLengthPrefix;
  if (!parser.Header(frame)) return DecodeResult::kBad;
  const bool has_params = ReadBE(frame + 2, 2) & msg_flags::kParams;
  if (!has_params) {
    if (len != kHeaderSize) {
      parser.Fail(WireStatus::kInvalidHeader, 0, {}, "bytes after a header without the PARAMS flag");
      return DecodeResult::kBad;
    }
  } else if (!parser.Params(frame + kHeaderSize, frame + len)) {
    return DecodeResult::kBad;
  }
  *out = std::move(m);
  return DecodeResult::kGood;
}

bool EncodeAround(const Message& m, std::vector<uint8_t>* head, std::vector<uint8_t>* tail) {
  if (!WithinLimits(m)) return false;
  std::vector<uint8_t> params;
  if (m.volume_name) PutParam(&params, ParamType::kVolumeName, reinterpret_cast<const uint8_t*>(m.volume_name->data()), m.volume_name->size());
  if (m.volume_id) PutInt(&params, ParamType::kVolumeId, *m.volume_id);
  if (m.connect_flags) PutInt(&params, ParamType::kConnectFlags, *m.connect_flags);
  if (m.io_op) PutInt(&params, ParamType::kIoOp, static_cast<uint8_t>(*m.io_op));
  if (m.block_num) PutInt(&params, ParamType::kBlockNum, *m.block_num);
  if (m.count) PutInt(&params, ParamType::kCount, *m.count);
  if (m.permissions) PutInt(&params, ParamType::kPermissions, static_cast<uint16_t>(*m.permissions));
  if (m.version) PutInt(&params, ParamType::kVersion, *m.version);
  if (m.ttl_ms) PutInt(&params, ParamType::kTtl, *m.ttl_ms);
  if (m.hb_ttl_ms) PutInt(&params, ParamType::kHbTtl, *m.hb_ttl_ms);
  if (m.status) PutInt(&params, ParamType::kStatus, static_cast<uint16_t>(*m.status));
  if (m.err_param) PutInt(&params, ParamType::kErrParam, *m.err_param);
  if (m.err_value) PutBytes(&params, ParamType::kErrValue, *m.err_value);
  if (m.protocol_version) PutInt(&params, ParamType::kProtocolVersion, *m.protocol_version);
  if (m.parent_list) {
    std::string joined;
    for (const std::string& p : *m.parent_list) joined += (joined.empty() ? "" : "\n") + p;
    PutParam(&params, ParamType::kParentList, reinterpret_cast<const uint8_t*>(joined.data()), joined.size());
  }
  if (m.volume_size) PutInt(&params, ParamType::kVolumeSize, *m.volume_size);
  if (m.block_size) PutInt(&params, ParamType::kBlockSize, *m.block_size);
  if (m.verifier) PutBytes(&params, ParamType::kVerifier, *m.verifier);
  if (m.key) PutBytes(&params, ParamType::kKey, *m.key);
  if (m.cookie) PutBytes(&params, ParamType::kCookie, *m.cookie);
  if (m.versions) {
    std::vector<uint8_t> vs;
    vs.reserve(8 * m.versions->size());
    for (uint64_t v : *m.versions) WriteBE(&vs, v, 8);
    PutBytes(&params, ParamType::kVersions, vs);
  }
  if (m.mask) PutBytes(&params, ParamType::kMask, *m.mask);
  const size_t data_len = m.data ? m.data->size() : 0;
  if (m.data) {  // DATA goes last: its bytes follow *head, untouched
    WriteBE(&params, static_cast<uint16_t>(ParamType::kData), 2);
    WriteBE(&params, data_len, 4);
  }
  tail->clear();
  uint16_t flags = m.flags;
  if (!params.empty()) {
    flags |= msg_flags::kParams;
    PutParam(tail, ParamType::kEndMsg, nullptr, 0);
  } else {
    flags &= static_cast<uint16_t>(~msg_flags::kParams);
  }
  head->reserve(head->size() + kLengthPrefix + kHeaderSize + params.size());
  WriteBE(head, kHeaderSize + params.size() + data_len + tail->size(), 4);
  head->push_back(static_cast<uint8_t>(m.opcode));
  head->push_back(m.hops_left);
  WriteBE(head, flags, 2);
  head->insert(head->end(), m.originator.begin(), m.originator.end());
  WriteBE(head, m.xid, 8);
  head->insert(head->end(), params.begin(), params.end());
  return true;
}

bool Encode(const Message& m, std::vector<uint8_t>* out) {
  std::vector<uint8_t> head, tail;
  if (!EncodeAround(m, &head, &tail)) return false;
  out->insert(out->end(), head.begin(), head.end());
  if (m.data) out->insert(out->end(), m.data->begin(), m.data->end());
  out->insert(out->end(), tail.begin(), tail.end());
  return true;
}

Message ErrorReply(const DecodeError& err) {
  Message r;
  r.opcode = Opcode::kErrReply;
  r.xid = err.xid;
  r.originator = err.originator;
  r.status = err.status;
  if (err.err_param) r.err_param = err.err_param;
  if (!err.err_value.empty()) r.err_value = err.err_value;
  return r;
}

}  // namespace vshare::wire
