#include "net/connection.h"

#include <doctest/doctest.h>

#include "net/wire.h"

using namespace vshare;
using namespace vshare::net;
using namespace std::chrono_literals;

namespace {

// A connected pair of sockets on 127.0.0.1.
std::pair<tcp::socket, tcp::socket> SocketPair(asio::io_context& io) {
  tcp::acceptor acc(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket client(io);
  client.connect(acc.local_endpoint());
  tcp::socket server = acc.accept();
  return {std::move(client), std::move(server)};
}

// Runs `io` until `done` is set, for at most `limit`: no test can hang.
void RunUntil(asio::io_context& io, const bool& done, std::chrono::milliseconds limit = 5000ms) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done && std::chrono::steady_clock::now() < deadline) {
    io.run_for(10ms);
    if (io.stopped()) io.restart();
  }
  REQUIRE(done);
}

Message Get(uint64_t block) {
  Message m;
  m.opcode = Opcode::kIoRequest;
  m.io_op = IoOp::kGet;
  m.block_num = block;
  return m;
}

Message ReplyTo(const Message& req) {
  Message r;
  r.opcode = Opcode::kOkReply;
  r.xid = req.xid;
  r.block_num = req.block_num;
  return r;
}

}  // namespace

TEST_CASE("many calls in flight get their own replies, answered in reverse order") {
  asio::io_context io;
  auto [a, b] = SocketPair(io);
  std::vector<Message> held;
  std::shared_ptr<Connection> server;
  server = Connection::Start(std::move(b), [&](const std::shared_ptr<Connection>& c, Message m) {
    held.push_back(std::move(m));
    if (held.size() == 50)  // answer only once all have arrived, last first
      for (auto it = held.rbegin(); it != held.rend(); ++it) c->Send(ReplyTo(*it));
  });
  auto client = Connection::Start(std::move(a), nullptr);
  int ok = 0;
  bool done = false;
  for (uint64_t i = 0; i < 50; ++i) {
    asio::co_spawn(io, [&, i]() -> asio::awaitable<void> {
      CallResult r = co_await client->Call(Get(i), 2000ms);
      if (r.status.ok() && r.reply.block_num == i) ++ok;
      if (ok == 50) done = true;
    }, asio::detached);
  }
  RunUntil(io, done);
  CHECK(ok == 50);
  CHECK(client->pending_calls() == 0);
  CHECK(client->counters().frames_in == 50);
}

TEST_CASE("a call without a reply times out at its deadline, and a late reply is dropped") {
  asio::io_context io;
  auto [a, b] = SocketPair(io);
  Message late;
  auto server = Connection::Start(std::move(b), [&](const std::shared_ptr<Connection>&, Message m) { late = m; });
  auto client = Connection::Start(std::move(a), nullptr);
  bool done = false;
  Status st;
  auto start = std::chrono::steady_clock::now();
  std::chrono::milliseconds took{};
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    CallResult r = co_await client->Call(Get(1), 200ms);
    st = r.status;
    took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
    server->Send(ReplyTo(late));  // too late now
    done = true;
  }, asio::detached);
  RunUntil(io, done);
  CHECK(st.code() == Status::Code::kTimedOut);
  CHECK(took >= 190ms);
  CHECK(took < 2000ms);
  bool settled = false;
  asio::steady_timer t(io, 100ms);
  t.async_wait([&](auto) { settled = true; });
  RunUntil(io, settled);
  CHECK(client->counters().late_replies == 1);
  CHECK(client->counters().timeouts == 1);
}

TEST_CASE("a closing peer fails pending calls at once, not at their deadline") {
  asio::io_context io;
  auto [a, b] = SocketPair(io);
  auto server = Connection::Start(std::move(b), [&](const std::shared_ptr<Connection>& c, Message) {
    c->Close(Status::IOError("going away"));
  });
  Status closed_why;
  auto client = Connection::Start(std::move(a), nullptr,
                                  [&](const std::shared_ptr<Connection>&, const Status& s) { closed_why = s; });
  bool done = false;
  Status st;
  auto start = std::chrono::steady_clock::now();
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    st = (co_await client->Call(Get(1), 10000ms)).status;
    done = true;
  }, asio::detached);
  RunUntil(io, done, 3000ms);
  CHECK(st.code() == Status::Code::kIOError);
  CHECK(std::chrono::steady_clock::now() - start < 2000ms);
  CHECK(client->closed());
  CHECK_FALSE(closed_why.ok());
}

TEST_CASE("a malformed frame gets the right ERR_REPLY and the stream goes on") {
  asio::io_context io;
  auto [raw, b] = SocketPair(io);
  int requests = 0;
  auto server = Connection::Start(std::move(b), [&](const std::shared_ptr<Connection>& c, Message m) {
    ++requests;
    c->Send(ReplyTo(m));
  });
  // An IO_REQUEST with an unknown parameter 999, XID 77, then a good one.
  std::vector<uint8_t> bytes = {0, 0, 0, 28 + 6 + 6, 3, 1, 0, 2};
  bytes.resize(bytes.size() + 16, 0);
  for (int i = 0; i < 7; ++i) bytes.push_back(0);
  bytes.push_back(77);
  for (uint8_t x : {0x03, 0xe7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}) bytes.push_back(x);
  Message good = Get(5);
  good.xid = 78;
  REQUIRE(wire::Encode(good, &bytes));
  asio::write(raw, asio::buffer(bytes));

  std::vector<Message> replies;
  std::vector<uint8_t> in(4096);
  size_t filled = 0;
  auto deadline = std::chrono::steady_clock::now() + 3s;
  while (replies.size() < 2 && std::chrono::steady_clock::now() < deadline) {
    io.run_for(10ms);
    if (io.stopped()) io.restart();
    raw.non_blocking(true);
    boost::system::error_code ec;
    filled += raw.read_some(asio::buffer(in.data() + filled, in.size() - filled), ec);
    Message m;
    size_t used;
    wire::DecodeError err;
    while (wire::Decode(std::span(in.data(), filled), &m, &used, &err) == wire::DecodeResult::kGood) {
      replies.push_back(m);
      std::memmove(in.data(), in.data() + used, filled - used);
      filled -= used;
    }
  }
  REQUIRE(replies.size() == 2);
  CHECK(replies[0].opcode == Opcode::kErrReply);
  CHECK(replies[0].xid == 77);
  CHECK(*replies[0].status == WireStatus::kBadParamId);
  CHECK(*replies[0].err_param == 999);
  CHECK(replies[1].opcode == Opcode::kOkReply);
  CHECK(replies[1].xid == 78);
  CHECK(requests == 1);
  CHECK(server->counters().bad_frames == 1);
  CHECK_FALSE(server->closed());
}

TEST_CASE("an impossible frame length closes the connection") {
  asio::io_context io;
  auto [raw, b] = SocketPair(io);
  Status why;
  auto server = Connection::Start(std::move(b), nullptr, [&](const std::shared_ptr<Connection>&, const Status& s) { why = s; });
  std::vector<uint8_t> bytes = {0x7f, 0xff, 0xff, 0xff, 1, 2, 3};
  asio::write(raw, asio::buffer(bytes));
  bool done = false;
  asio::steady_timer poll(io);
  std::function<void()> check = [&] {
    if (server->closed()) { done = true; return; }
    poll.expires_after(10ms);
    poll.async_wait([&](auto) { check(); });
  };
  check();
  RunUntil(io, done);
  CHECK(why.message().find("bad framing") != std::string::npos);
}

TEST_CASE("large frames, many in flight, cross the link byte for byte in both directions") {
  // Each frame is larger than the socket's buffers, so it is sent and
  // received in several pieces; the answers echo the bytes back.
  asio::io_context io;
  auto [a, b] = SocketPair(io);
  auto server = Connection::Start(std::move(b), [&](const std::shared_ptr<Connection>& c, Message m) {
    Message r = ReplyTo(m);
    r.data = m.data;
    c->Send(r);
  });
  auto client = Connection::Start(std::move(a), nullptr);
  const size_t sizes[] = {3u << 20, (1u << 20) + 4096, 100, 5u << 20, 70000, 1u << 20};
  constexpr int kCalls = 12;
  int ok = 0, answered = 0;
  bool done = false;
  for (int i = 0; i < kCalls; ++i) {
    std::vector<uint8_t> bytes(sizes[i % 6]);
    for (size_t k = 0; k < bytes.size(); ++k) bytes[k] = static_cast<uint8_t>((k * 131 + i * 7) ^ (k >> 12));
    asio::co_spawn(io, [&, i, sent = Bytes(std::move(bytes))]() -> asio::awaitable<void> {
      Message m = Get(static_cast<uint64_t>(i));
      m.io_op = IoOp::kPut;
      m.data = sent;
      CallResult r = co_await client->Call(m, 5000ms);
      if (r.status.ok() && r.reply.block_num == static_cast<uint64_t>(i) && r.reply.data && *r.reply.data == sent) ++ok;
      if (++answered == kCalls) done = true;
    }, asio::detached);
  }
  RunUntil(io, done, 20000ms);
  CHECK(ok == kCalls);
  CHECK(client->counters().bad_frames == 0);
  CHECK(server->counters().bad_frames == 0);
}

TEST_CASE("a link over its send budget reads no more requests until its peer has taken the answers") {
  // The peer sends 64 requests and reads nothing at first; each answer is
  // 1 MiB. Small socket buffers keep the kernel from taking in more than
  // a little of them.
  asio::io_context io;
  auto [a, b] = SocketPair(io);
  a.set_option(asio::socket_base::receive_buffer_size(64 << 10));
  b.set_option(asio::socket_base::send_buffer_size(64 << 10));
  constexpr int kRequests = 64;
  constexpr size_t kAnswer = 1u << 20;
  const Bytes answer(std::vector<uint8_t>(kAnswer, 0x5a));
  auto budget = std::make_shared<SendBudget>(kAnswer);
  int served = 0;
  auto server = Connection::Start(
      std::move(b),
      [&](const std::shared_ptr<Connection>& c, Message m) {
        ++served;
        Message r = ReplyTo(m);
        r.data = answer;
        c->Send(r);
      },
      nullptr, budget);
  std::vector<uint8_t> requests;
  for (int i = 0; i < kRequests; ++i) {
    Message m = Get(static_cast<uint64_t>(i));
    m.xid = static_cast<uint64_t>(i + 1);
    std::vector<uint8_t> frame;
    REQUIRE(wire::Encode(m, &frame));
    requests.insert(requests.end(), frame.begin(), frame.end());
  }
  asio::write(a, asio::buffer(requests));
  io.run_for(300ms);
  // Without the budget it would have answered all 64 by now, queuing 64 MiB.
  CHECK(served >= 1);
  CHECK(served <= 8);
  CHECK(budget->pauses() >= 1);
  CHECK(budget->peak() <= budget->limit() + kAnswer + 4096);  // the limit, plus the answer that crossed it
  // The peer reads now: every request is answered in the end, and the
  // queue is empty again.
  auto client = Connection::Start(std::move(a), nullptr);  // no calls of its own: the answers count as late
  bool all = false;
  asio::steady_timer poll(io);
  std::function<void()> check = [&] {
    if (client->counters().late_replies == kRequests) return void(all = true);
    poll.expires_after(5ms);
    poll.async_wait([&](boost::system::error_code) { check(); });
  };
  check();
  RunUntil(io, all, 10000ms);
  CHECK(served == kRequests);
  CHECK(budget->queued() == 0);
  CHECK(budget->peak() <= budget->limit() + kAnswer + 4096);
}
