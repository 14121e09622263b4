#include "net/wire.h"

#include <doctest/doctest.h>

#include <cstdio>

using namespace vshare;
using namespace vshare::wire;

namespace {

// Builds frames by hand, so tests can say exactly which bytes go wrong.
struct Raw {
  uint8_t opcode = static_cast<uint8_t>(Opcode::kIoRequest);
  uint16_t flags = msg_flags::kParams;
  uint64_t xid = 0x1122334455667788ULL;
  std::vector<uint8_t> params;

  Raw& Param(uint16_t type, std::vector<uint8_t> value, int64_t claimed_len = -1) {
    uint32_t len = claimed_len < 0 ? static_cast<uint32_t>(value.size()) : static_cast<uint32_t>(claimed_len);
    params.push_back(static_cast<uint8_t>(type >> 8));
    params.push_back(static_cast<uint8_t>(type));
    for (int i = 3; i >= 0; --i) params.push_back(static_cast<uint8_t>(len >> (8 * i)));
    params.insert(params.end(), value.begin(), value.end());
    return *this;
  }
  Raw& End() { return Param(0, {}); }
  std::vector<uint8_t> Bytes(int64_t claimed_frame_len = -1) const {
    std::vector<uint8_t> f;
    uint32_t len = claimed_frame_len < 0 ? static_cast<uint32_t>(kHeaderSize + params.size())
                                         : static_cast<uint32_t>(claimed_frame_len);
    for (int i = 3; i >= 0; --i) f.push_back(static_cast<uint8_t>(len >> (8 * i)));
    f.push_back(opcode);
    f.push_back(5);
    f.push_back(static_cast<uint8_t>(flags >> 8));
    f.push_back(static_cast<uint8_t>(flags));
    for (int i = 0; i < 16; ++i) f.push_back(static_cast<uint8_t>(i));
    for (int i = 7; i >= 0; --i) f.push_back(static_cast<uint8_t>(xid >> (8 * i)));
    f.insert(f.end(), params.begin(), params.end());
    return f;
  }
};

struct Outcome {
  DecodeResult result;
  Message msg;
  size_t consumed = 0;
  DecodeError err;
};

Outcome Run(const std::vector<uint8_t>& bytes) {
  Outcome o;
  o.result = Decode(bytes, &o.msg, &o.consumed, &o.err);
  return o;
}

Message Full() {
  Message m;
  m.opcode = Opcode::kOkReply;
  m.hops_left = 3;
  m.flags = msg_flags::kForceSync | msg_flags::kRecoveryOp;
  m.originator = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};
  m.xid = 0xfedcba9876543210ULL;
  m.volume_name = "volume_X";
  m.volume_id = 26924852;
  m.connect_flags = connect_flags::kIsProxy | connect_flags::kSyncWrite;
  m.block_num = (1ULL << 40) + 7;
  m.permissions = WirePerm::kWrite;
  m.data = std::vector<uint8_t>(4096, 0xab);
  m.verifier = std::vector<uint8_t>{1, 2, 3};
  m.key = std::vector<uint8_t>{4, 5};
  m.ttl_ms = 1198000;
  m.hb_ttl_ms = 30000;
  m.status = WireStatus::kInRecovery;
  m.err_param = 4;
  m.err_value = std::vector<uint8_t>{9};
  m.io_op = IoOp::kLock;
  m.protocol_version = kCurrentProtocolVersion;
  m.parent_list = std::vector<std::string>{"10.0.0.1:7000", "[::1]:7001"};
  m.version = 42;
  m.cookie = std::vector<uint8_t>(32, 7);
  m.volume_size = 256ULL << 20;
  m.block_size = 4096;
  m.flags |= msg_flags::kMore;
  m.count = 3;
  m.versions = std::vector<uint64_t>{1ULL << 63, 0, 77};
  m.mask = std::vector<uint8_t>{0x05};
  return m;
}

}  // namespace

TEST_CASE("every parameter survives a round trip") {
  std::vector<uint8_t> bytes;
  REQUIRE(Encode(Full(), &bytes));
  Outcome o = Run(bytes);
  REQUIRE(o.result == DecodeResult::kGood);
  CHECK(o.consumed == bytes.size());
  CHECK(o.msg == Full());
}

TEST_CASE("DATA decoded from an owned buffer refers to it instead of copying") {
  std::vector<uint8_t> bytes;
  REQUIRE(Encode(Full(), &bytes));
  const vshare::Bytes frame(bytes);
  Message m;
  size_t used = 0;
  DecodeError err;
  REQUIRE(Decode(frame.span(), &m, &used, &err, &frame) == DecodeResult::kGood);
  REQUIRE(m.data.has_value());
  CHECK(m.data->data() >= frame.data());
  CHECK(m.data->data() + m.data->size() <= frame.data() + frame.size());
  CHECK(m == Full());
}

TEST_CASE("range parameters: COUNT from 1 to the limit, VERSIONS in whole u64s, a MASK of at most a bit per block") {
  auto with = [](uint16_t type, std::vector<uint8_t> v) { return Run(Raw{}.Param(type, std::move(v)).End().Bytes()); };
  Outcome o = with(21, {0, 0, 0, 0});
  CHECK(o.result == DecodeResult::kBad);
  CHECK(o.err.status == WireStatus::kBadParamValue);
  CHECK(o.err.err_param == 21);
  o = with(21, {0, 0, 0x20, 0x01});  // 8193
  CHECK(o.err.status == WireStatus::kBadParamValue);
  o = with(21, {0, 0, 0x20, 0x00});  // 8192: the limit
  REQUIRE(o.result == DecodeResult::kGood);
  CHECK(o.msg.blocks() == 8192);
  o = with(22, std::vector<uint8_t>(12, 1));
  CHECK(o.err.status == WireStatus::kBadParamLength);
  CHECK(o.err.err_param == 22);
  o = with(22, {0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 9});
  REQUIRE(o.result == DecodeResult::kGood);
  CHECK(*o.msg.versions == std::vector<uint64_t>{256, 9});
  o = with(23, std::vector<uint8_t>(1025, 0xff));
  CHECK(o.err.status == WireStatus::kBadParamLength);
  Message none;
  CHECK(none.blocks() == 1);  // without COUNT a message is about one block
  Message big;
  big.count = 8193;
  std::vector<uint8_t> bytes;
  CHECK_FALSE(Encode(big, &bytes));
}

TEST_CASE("a header-only message has no PARAMS flag and 28 bytes") {
  Message hb;
  hb.opcode = Opcode::kHeartbeat;
  hb.xid = 9;
  std::vector<uint8_t> bytes;
  REQUIRE(Encode(hb, &bytes));
  CHECK(bytes.size() == kLengthPrefix + kHeaderSize);
  Outcome o = Run(bytes);
  REQUIRE(o.result == DecodeResult::kGood);
  CHECK(o.msg == hb);
}

TEST_CASE("Example One's reply, with the volume ID remapped, encodes as the seed describes") {
  Message reply;
  reply.opcode = Opcode::kOkReply;
  reply.xid = 5;
  reply.volume_id = 26924852;
  reply.block_num = 7;
  reply.permissions = WirePerm::kRead;
  reply.ttl_ms = 1198 * 1000;
  reply.hb_ttl_ms = 30 * 1000;
  std::vector<uint8_t> bytes;
  REQUIRE(Encode(reply, &bytes));
  Outcome o = Run(bytes);
  REQUIRE(o.result == DecodeResult::kGood);
  CHECK(*o.msg.volume_id == 26924852);
  CHECK(*o.msg.ttl_ms == 1198000);
  CHECK_FALSE(o.msg.data.has_value());
  CHECK(Describe(o.msg) == "OK_REPLY xid=5 vol=26924852 block=7 perm=READ ttl=1198000ms hb_ttl=30000ms");
}

TEST_CASE("every strict prefix needs more; two frames are taken one at a time") {
  std::vector<uint8_t> one, two;
  Message a = Full();
  a.data = std::vector<uint8_t>(100, 1);
  REQUIRE(Encode(a, &one));
  for (size_t n = 0; n < one.size(); ++n) {
    CAPTURE(n);
    std::vector<uint8_t> prefix(one.begin(), one.begin() + static_cast<long>(n));
    CHECK(Run(prefix).result == DecodeResult::kNeedMore);
  }
  two = one;
  Message hb;
  REQUIRE(Encode(hb, &two));
  Outcome first = Run(two);
  REQUIRE(first.result == DecodeResult::kGood);
  CHECK(first.consumed == one.size());
  std::vector<uint8_t> rest(two.begin() + static_cast<long>(first.consumed), two.end());
  CHECK(Run(rest).result == DecodeResult::kGood);
}

TEST_CASE("INVALID_HEADER: frame lengths that cannot be right break the stream") {
  for (int64_t len : {int64_t{0}, int64_t{27}, int64_t{kMaxFrame + 1}, int64_t{0xffffffff}}) {
    CAPTURE(len);
    std::vector<uint8_t> bytes = Raw{}.End().Bytes(len);
    Outcome o = Run(bytes);
    CHECK(o.result == DecodeResult::kBad);
    CHECK(o.consumed == 0);  // nothing after this can be trusted
    CHECK(o.err.status == WireStatus::kInvalidHeader);
    CHECK(o.err.err_value.size() == 4);
  }
}

TEST_CASE("INVALID_HEADER: opcode, flags and stray bytes; the frame is skipped") {
  Raw bad_op;
  bad_op.opcode = 0;
  Outcome o = Run(bad_op.End().Bytes());
  CHECK(o.result == DecodeResult::kBad);
  CHECK(o.err.status == WireStatus::kInvalidHeader);
  CHECK(o.err.header_read);
  CHECK(o.err.xid == 0x1122334455667788ULL);  // the ERR_REPLY can still name the request
  CHECK(o.consumed == kLengthPrefix + kHeaderSize + 6);

  Raw big_op;
  big_op.opcode = 200;
  CHECK(Run(big_op.End().Bytes()).err.err_value == std::vector<uint8_t>{200});

  Raw bad_flags;
  bad_flags.flags = msg_flags::kParams | 0x8000;
  o = Run(bad_flags.End().Bytes());
  CHECK(o.err.status == WireStatus::kInvalidHeader);
  CHECK(o.err.err_value == std::vector<uint8_t>{0x80, 0x00});

  Raw no_params_flag;
  no_params_flag.flags = 0;
  o = Run(no_params_flag.End().Bytes());
  CHECK(o.err.status == WireStatus::kInvalidHeader);
}

TEST_CASE("BAD_PARAM_ID names the unknown parameter") {
  Outcome o = Run(Raw{}.Param(999, {1, 2}).End().Bytes());
  CHECK(o.result == DecodeResult::kBad);
  CHECK(o.err.status == WireStatus::kBadParamId);
  CHECK(o.err.err_param == 999);
  CHECK(o.consumed > 0);
}

TEST_CASE("BAD_PARAM_LENGTH: wrong fixed sizes, overruns, limits, missing or early END_MSG") {
  struct Case {
    const char* name;
    std::vector<uint8_t> bytes;
    uint16_t err_param;
  };
  const uint16_t kBlock = static_cast<uint16_t>(ParamType::kBlockNum);
  const uint16_t kName = static_cast<uint16_t>(ParamType::kVolumeName);
  const uint16_t kData = static_cast<uint16_t>(ParamType::kData);
  for (const Case& c : {
           Case{"block number of 4 bytes", Raw{}.Param(kBlock, {0, 0, 0, 7}).End().Bytes(), kBlock},
           Case{"length past the frame", Raw{}.Param(kData, {1, 2, 3}, 1000).Bytes(), kData},
           Case{"data over the limit", Raw{}.Param(kData, {}, int64_t{kMaxData} + 1).Bytes(), kData},
           Case{"empty volume name", Raw{}.Param(kName, {}).End().Bytes(), kName},
           Case{"no END_MSG", Raw{}.Param(kBlock, std::vector<uint8_t>(8, 0)).Bytes(), 0},
           Case{"bytes after END_MSG", Raw{}.End().Param(kBlock, std::vector<uint8_t>(8, 0)).Bytes(), 0},
           Case{"END_MSG with a value", Raw{}.Param(0, {1}).Bytes(), 0},
       }) {
    CAPTURE(c.name);
    Outcome o = Run(c.bytes);
    CHECK(o.result == DecodeResult::kBad);
    CHECK(o.err.status == WireStatus::kBadParamLength);
    CHECK(o.err.err_param == c.err_param);
  }
}

TEST_CASE("BAD_PARAM_VALUE carries the offending bits in ERR_VALUE") {
  const uint16_t kPerm = static_cast<uint16_t>(ParamType::kPermissions);
  Outcome o = Run(Raw{}.Param(kPerm, {0, 7}).End().Bytes());
  CHECK(o.err.status == WireStatus::kBadParamValue);
  CHECK(o.err.err_param == kPerm);
  CHECK(o.err.err_value == std::vector<uint8_t>{0, 7});

  const uint16_t kFlags = static_cast<uint16_t>(ParamType::kConnectFlags);
  o = Run(Raw{}.Param(kFlags, {0x80, 0, 0, 0x01}).End().Bytes());
  CHECK(o.err.status == WireStatus::kBadParamValue);
  CHECK(o.err.err_value == std::vector<uint8_t>{0x80, 0, 0, 0});  // only the unknown bit

  const uint16_t kOp = static_cast<uint16_t>(ParamType::kIoOp);
  CHECK(Run(Raw{}.Param(kOp, {0}).End().Bytes()).err.status == WireStatus::kBadParamValue);
  CHECK(Run(Raw{}.Param(kOp, {1}).Param(kOp, {1}).End().Bytes()).err.status == WireStatus::kBadParamValue);
  const uint16_t kBs = static_cast<uint16_t>(ParamType::kBlockSize);
  CHECK(Run(Raw{}.Param(kBs, {0, 0, 0x10, 0x01}).End().Bytes()).err.status == WireStatus::kBadParamValue);
  const uint16_t kParents = static_cast<uint16_t>(ParamType::kParentList);
  CHECK(Run(Raw{}.Param(kParents, {'a', '\n', '\n', 'b'}).End().Bytes()).err.status == WireStatus::kBadParamValue);
}

TEST_CASE("the ERR_REPLY for a refused frame round-trips with its status") {
  Outcome o = Run(Raw{}.Param(999, {}).End().Bytes());
  Message reply = ErrorReply(o.err);
  std::vector<uint8_t> bytes;
  REQUIRE(Encode(reply, &bytes));
  Outcome back = Run(bytes);
  REQUIRE(back.result == DecodeResult::kGood);
  CHECK(back.msg.opcode == Opcode::kErrReply);
  CHECK(back.msg.xid == 0x1122334455667788ULL);
  CHECK(*back.msg.status == WireStatus::kBadParamId);
  CHECK(*back.msg.err_param == 999);
}

TEST_CASE("the encoder refuses what no peer would accept") {
  std::vector<uint8_t> bytes;
  Message m;
  m.data = std::vector<uint8_t>(kMaxData + 1);
  CHECK_FALSE(Encode(m, &bytes));
  m = Message{};
  m.volume_name = "";
  CHECK_FALSE(Encode(m, &bytes));
  m = Message{};
  m.parent_list = std::vector<std::string>{"a\nb"};
  CHECK_FALSE(Encode(m, &bytes));
  CHECK(bytes.empty());
}

TEST_CASE("frames written by an independent encoder from doc/protocol.md decode") {
  // test/fuzz/wire_corpus holds frames made by a separate Python encoder
  // from the documented format; they double as the fuzzer's seeds.
  for (const char* name : {"connect", "get", "put", "reply", "heartbeat", "err", "get_range", "reply_part"}) {
    CAPTURE(name);
    std::string path = std::string(VSHARE_SOURCE_DIR) + "/test/fuzz/wire_corpus/" + name;
    FILE* f = std::fopen(path.c_str(), "rb");
    REQUIRE(f);
    std::vector<uint8_t> bytes(4096);
    bytes.resize(std::fread(bytes.data(), 1, bytes.size(), f));
    std::fclose(f);
    Outcome o = Run(bytes);
    REQUIRE(o.result == DecodeResult::kGood);
    CHECK(o.consumed == bytes.size());
    std::vector<uint8_t> again;
    REQUIRE(Encode(o.msg, &again));
    CHECK(Run(again).msg == o.msg);
  }
}

TEST_CASE("the worked example in doc/protocol.md is byte-exact") {
  Message m;
  m.opcode = Opcode::kOkReply;
  m.originator = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 3};
  m.xid = 5;
  m.volume_id = 26924852;
  m.block_num = 7;
  m.permissions = WirePerm::kRead;
  m.ttl_ms = 1198000;
  m.hb_ttl_ms = 30000;
  std::vector<uint8_t> bytes;
  REQUIRE(Encode(m, &bytes));
  const std::vector<uint8_t> expected = {
      0x00, 0x00, 0x00, 0x56,                                                   // length
      0x04, 0x00, 0x00, 0x02,                                                   // OK_REPLY, hops, PARAMS
      0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0x0a, 0x00, 0x00, 0x03,         // originator
      0, 0, 0, 0, 0, 0, 0, 5,                                                   // xid
      0x00, 0x02, 0, 0, 0, 4, 0x01, 0x9a, 0xd7, 0x34,                           // VOLUME_ID
      0x00, 0x04, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 7,                           // BLOCK_NUM
      0x00, 0x05, 0, 0, 0, 2, 0, 1,                                             // PERMISSIONS
      0x00, 0x09, 0, 0, 0, 4, 0x00, 0x12, 0x47, 0xb0,                           // TTL
      0x00, 0x0a, 0, 0, 0, 4, 0x00, 0x00, 0x75, 0x30,                           // HB_TTL
      0, 0, 0, 0, 0, 0,                                                         // END_MSG
  };
  CHECK(bytes == expected);
}
