#include "core/range_adapter.h"

#include <doctest/doctest.h>

using namespace vshare;

namespace {

constexpr uint32_t kBs = 512;

Outgoing Call(uint64_t id, uint64_t block, IoOp op = IoOp::kGet, WirePerm perm = WirePerm::kRead) {
  Outgoing o;
  o.kind = Outgoing::Kind::kCall;
  o.to_parent = true;
  o.call_id = id;
  o.msg.opcode = Opcode::kIoRequest;
  o.msg.io_op = op;
  o.msg.volume_id = 7;
  o.msg.block_num = block;
  o.msg.permissions = perm;
  return o;
}

std::vector<uint8_t> Fill(size_t n, uint8_t c) { return std::vector<uint8_t>(n, c); }

// A child's range request (from link 3), and an engine's answer to one of
// its blocks.
Message RangeRequest(IoOp op, uint64_t xid, uint64_t first, uint32_t count) {
  Message m;
  m.opcode = Opcode::kIoRequest;
  m.io_op = op;
  m.xid = xid;
  m.block_num = first;
  m.count = count;
  if (op == IoOp::kFlush) m.data = Fill(size_t{count} * kBs, 'f');
  return m;
}

Outgoing AnswerTo(const Message& block_request, Opcode op = Opcode::kOkReply) {
  Outgoing o;
  o.child = 3;
  o.msg.opcode = op;
  o.msg.xid = block_request.xid;
  o.msg.block_num = block_request.block_num;
  if (op == Opcode::kErrReply) o.msg.status = WireStatus::kBusy;
  return o;
}

}  // namespace

TEST_CASE("ranges out: neighbouring calls that differ only in their block go as one request") {
  RangeAdapter a(kBs);
  uint64_t next = 100;
  std::vector<Outgoing> out;
  for (uint64_t b = 10; b < 14; ++b) out.push_back(Call(b, b));
  out.push_back(Call(20, 15));                                   // not next to 13
  out.push_back(Call(21, 16, IoOp::kGet, WirePerm::kWrite));     // another permission
  out.push_back(Call(22, 17, IoOp::kGet, WirePerm::kWrite));
  out[1].msg.version = 9;  // a kept copy, revalidated: versions travel per block
  std::vector<Outgoing> merged = a.Merge(std::move(out), [&] { return next++; });
  REQUIRE(merged.size() == 3);
  CHECK(*merged[0].msg.block_num == 10);
  CHECK(merged[0].msg.blocks() == 4);
  CHECK(*merged[0].msg.versions == std::vector<uint64_t>{0, 9, 0, 0});
  CHECK(a.IsRangeCall(merged[0].call_id));
  CHECK(merged[1].call_id == 20);  // alone: as it was made
  CHECK_FALSE(merged[1].msg.count.has_value());
  CHECK(merged[2].msg.blocks() == 2);

  // The answer may come in parts; each names the run it answers.
  Message part;
  part.opcode = Opcode::kOkReply;
  part.flags = msg_flags::kMore;
  part.block_num = 12;
  part.count = 2;
  part.permissions = WirePerm::kRead;
  part.versions = std::vector<uint64_t>{5, 6};
  part.data = Fill(2 * kBs, 'x');
  auto answers = a.SplitReply(merged[0].call_id, Status::Ok(), part);
  REQUIRE(answers.size() == 2);
  CHECK(answers[0].call_id == 12);
  CHECK(*answers[0].reply.block_num == 12);
  CHECK(*answers[0].reply.version == 5);
  CHECK(answers[0].reply.data->size() == kBs);
  CHECK(answers[1].call_id == 13);
  // The last part leaves a block out: that call fails rather than waits.
  Message last = part;
  last.flags = 0;
  last.block_num = 10;
  last.count = 1;
  last.versions = std::vector<uint64_t>{4};
  last.data = Fill(kBs, 'y');
  answers = a.SplitReply(merged[0].call_id, Status::Ok(), last);
  REQUIRE(answers.size() == 2);
  CHECK(answers[0].call_id == 10);
  CHECK(answers[0].status.ok());
  CHECK(answers[1].call_id == 11);
  CHECK_FALSE(answers[1].status.ok());
  CHECK_FALSE(a.IsRangeCall(merged[0].call_id));
  // A failed call fails every block of it.
  answers = a.SplitReply(merged[2].call_id, Status::TimedOut("no reply"), {});
  CHECK(answers.size() == 2);
  CHECK(answers[1].status.code() == Status::Code::kTimedOut);
}

TEST_CASE("ranges in: a range request is split per block, and the answers go back as parts") {
  RangeAdapter a(kBs);
  Message get;
  get.opcode = Opcode::kIoRequest;
  get.io_op = IoOp::kFlush;
  get.xid = 55;
  get.block_num = 40;
  get.count = 4;
  get.data = Fill(4 * kBs, 'f');
  std::vector<Message> one = a.Split(false, 3, get);
  REQUIRE(one.size() == 4);
  for (size_t i = 0; i < 4; ++i) {
    CHECK(*one[i].block_num == 40 + i);
    CHECK_FALSE(one[i].count.has_value());
    CHECK(one[i].data->size() == kBs);
    CHECK(one[i].xid != 55);
  }
  CHECK(one[0].data->data() + kBs == one[1].data->data());  // slices of one buffer, not copies

  // The engine answers blocks 41 and 40 at once, 43 later, 42 last.
  auto answer = [&](const Message& m, bool data) {
    Outgoing o;
    o.child = 3;
    o.msg.opcode = Opcode::kOkReply;
    o.msg.xid = m.xid;
    o.msg.block_num = m.block_num;
    if (data) o.msg.data = Fill(kBs, 'd');
    return o;
  };
  uint64_t next = 1;
  std::vector<Outgoing> out = a.Merge({answer(one[0], true), answer(one[1], false)}, [&] { return next++; });
  REQUIRE(out.size() == 1);
  CHECK(out[0].msg.xid == 55);
  CHECK(*out[0].msg.block_num == 40);
  CHECK(out[0].msg.blocks() == 2);
  CHECK((out[0].msg.flags & msg_flags::kMore) != 0);
  CHECK(*out[0].msg.mask == std::vector<uint8_t>{0x01});  // only block 40's bytes
  CHECK(out[0].msg.data->size() == kBs);
  out = a.Merge({answer(one[3], false)}, [&] { return next++; });
  CHECK(*out[0].msg.block_num == 43);
  CHECK((out[0].msg.flags & msg_flags::kMore) != 0);
  Outgoing refused = answer(one[2], false);
  refused.msg.opcode = Opcode::kErrReply;
  refused.msg.status = WireStatus::kInRecovery;
  out = a.Merge({refused}, [&] { return next++; });
  CHECK(*out[0].msg.block_num == 42);
  CHECK(out[0].msg.opcode == Opcode::kErrReply);
  CHECK((out[0].msg.flags & msg_flags::kMore) == 0);  // the last part
  CHECK(a.open_splits() == 0);
}

TEST_CASE("ranges out: a message to the same place in between keeps its place") {
  RangeAdapter a(kBs);
  uint64_t next = 1;
  Outgoing reply;
  reply.to_parent = true;
  reply.msg.opcode = Opcode::kOkReply;
  std::vector<Outgoing> merged = a.Merge({Call(1, 5), reply, Call(2, 6)}, [&] { return next++; });
  REQUIRE(merged.size() == 3);  // the reply must not be overtaken
  CHECK(merged[1].msg.opcode == Opcode::kOkReply);
}

TEST_CASE("ranges out: calls interleaved with calls about other blocks still go as ranges") {
  // What a full cache does: each fetch first releases the copy it evicts.
  RangeAdapter a(kBs);
  uint64_t next = 100;
  std::vector<Outgoing> out;
  for (uint64_t k = 0; k < 8; ++k) {
    out.push_back(Call(2 * k, 1000 + k, IoOp::kLock, WirePerm::kNone));  // release of block 1000 + k
    out.push_back(Call(2 * k + 1, 10 + k));                            // GET of block 10 + k
  }
  std::vector<Outgoing> merged = a.Merge(std::move(out), [&] { return next++; });
  REQUIRE(merged.size() == 2);
  CHECK(*merged[0].msg.io_op == IoOp::kLock);
  CHECK(*merged[0].msg.block_num == 1000);
  CHECK(merged[0].msg.blocks() == 8);
  CHECK(*merged[1].msg.io_op == IoOp::kGet);
  CHECK(*merged[1].msg.block_num == 10);
  CHECK(merged[1].msg.blocks() == 8);
}

TEST_CASE("ranges out: a range never takes in a block that a message after it is about") {
  RangeAdapter a(kBs);
  uint64_t next = 100;
  // GET 5, then a release of block 6, then GET 6: the GET of 6 must stay
  // behind the release of 6 (same block), so the first range stops at 5.
  std::vector<Outgoing> merged = a.Merge(
      {Call(1, 5), Call(2, 6, IoOp::kLock, WirePerm::kNone), Call(3, 6), Call(4, 7)}, [&] { return next++; });
  REQUIRE(merged.size() == 3);
  CHECK(*merged[0].msg.block_num == 5);
  CHECK(merged[0].msg.blocks() == 1);
  CHECK(*merged[1].msg.io_op == IoOp::kLock);
  CHECK(*merged[2].msg.block_num == 6);  // GET 6 and 7, after the release
  CHECK(merged[2].msg.blocks() == 2);
  // A message about a block further on stops the range short of it.
  merged = a.Merge({Call(5, 20), Call(6, 23, IoOp::kLock, WirePerm::kNone), Call(7, 21), Call(8, 22), Call(9, 23)},
                   [&] { return next++; });
  REQUIRE(merged.size() == 3);
  CHECK(merged[0].msg.blocks() == 3);  // 20..22
  CHECK(*merged[2].msg.block_num == 23);
}

TEST_CASE("ranges in: the last answer, in another shape, ends the range; the part before it does not") {
  RangeAdapter a(kBs);
  std::vector<Message> one = a.Split(false, 3, RangeRequest(IoOp::kFlush, 77, 8, 3));
  REQUIRE(one.size() == 3);
  // All three in one go, the last one refused (a store error): two parts.
  uint64_t next = 1;
  std::vector<Outgoing> out =
      a.Merge({AnswerTo(one[0]), AnswerTo(one[1]), AnswerTo(one[2], Opcode::kErrReply)}, [&] { return next++; });
  REQUIRE(out.size() == 2);
  CHECK(out[0].msg.blocks() == 2);
  CHECK((out[0].msg.flags & msg_flags::kMore) != 0);  // more follows: the refusal
  CHECK(out[1].msg.opcode == Opcode::kErrReply);
  CHECK(*out[1].msg.block_num == 10);
  CHECK((out[1].msg.flags & msg_flags::kMore) == 0);
  CHECK(a.open_splits() == 0);
}

TEST_CASE("ranges in: a second answer for a block is dropped, and the range still waits for the others") {
  RangeAdapter a(kBs);
  std::vector<Message> one = a.Split(false, 3, RangeRequest(IoOp::kGet, 78, 20, 2));
  REQUIRE(one.size() == 2);
  uint64_t next = 1;
  std::vector<Outgoing> out = a.Merge({AnswerTo(one[0]), AnswerTo(one[0])}, [&] { return next++; });
  REQUIRE(out.size() == 1);
  CHECK(out[0].msg.blocks() == 1);
  CHECK((out[0].msg.flags & msg_flags::kMore) != 0);  // block 21 is still to come
  CHECK(a.open_splits() == 1);
  out = a.Merge({AnswerTo(one[1])}, [&] { return next++; });
  REQUIRE(out.size() == 1);
  CHECK((out[0].msg.flags & msg_flags::kMore) == 0);
  CHECK(a.open_splits() == 0);
}
