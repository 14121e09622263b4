#include "core/traffic.h"

#include <doctest/doctest.h>

namespace vshare {
namespace {

Message Io(IoOp op, std::optional<uint64_t> block, size_t data = 0) {
  Message m;
  m.opcode = Opcode::kIoRequest;
  m.io_op = op;
  m.block_num = block;
  if (data) m.data = std::vector<uint8_t>(data);
  return m;
}

TEST_CASE("traffic: requests are named by what they ask for") {
  CHECK(RequestKind(Io(IoOp::kGet, 3)) == "GET");
  CHECK(RequestKind(Io(IoOp::kFlush, 3, 4096)) == "FLUSH");
  CHECK(RequestKind(Io(IoOp::kFlush, std::nullopt)) == "SYNC");
  CHECK(RequestKind(Io(IoOp::kLock, std::nullopt)) == "LEASE");
  CHECK(RequestKind(Io(IoOp::kLock, 9)) == "LOCK");
  Message c;
  c.opcode = Opcode::kConnect;
  CHECK(RequestKind(c) == "CONNECT");
}

TEST_CASE("traffic: counts by kind, bytes of DATA, invalidations and errors both ways") {
  TrafficCounters t;
  t.ToParent(Io(IoOp::kGet, 1));
  t.ToParent(Io(IoOp::kGet, 2));
  t.ToParent(Io(IoOp::kFlush, 2, 4096));
  Message ok;
  ok.opcode = Opcode::kOkReply;
  ok.data = std::vector<uint8_t>(4096);
  t.FromParent(ok);
  t.ToParent(ok);  // a recall's answer: a reply, not a request, but its bytes count
  Message inval;
  inval.opcode = Opcode::kInvalidate;
  t.FromParent(inval);
  t.ToChild(inval);
  t.ToChild(inval);
  Message err;
  err.opcode = Opcode::kErrReply;
  err.status = WireStatus::kBusy;
  t.FromParent(err);
  t.ToChild(err);
  t.CallFailed();
  t.FromChild(Io(IoOp::kPut, 5, 4096));
  t.ToChild(ok);

  TrafficSnapshot s = t.Snapshot();
  CHECK(s.sent == std::map<std::string, uint64_t>{{"GET", 2}, {"FLUSH", 1}});
  CHECK(s.served == std::map<std::string, uint64_t>{{"PUT", 1}});
  CHECK(s.bytes_to_parent == 8192);
  CHECK(s.bytes_from_parent == 4096);
  CHECK(s.bytes_from_children == 4096);
  CHECK(s.bytes_to_children == 4096);
  CHECK(s.invalidations_received == 1);
  CHECK(s.invalidations_sent == 2);
  CHECK(s.errors_received == std::map<std::string, uint64_t>{{"BUSY", 1}, {"NO_REPLY", 1}});
  CHECK(s.errors_sent == std::map<std::string, uint64_t>{{"BUSY", 1}});
  t.Reset();
  CHECK(t.Snapshot().sent.empty());
}

}  // namespace
}  // namespace vshare
