#include "net/connection.h"

#include <cstring>
#include <optional>

#include "core/log.h"
#include "net/wire.h"

namespace vshare::net {

using asio::awaitable;
using asio::use_awaitable;

std::shared_ptr<Connection> Connection::Start(tcp::socket socket, RequestHandler on_request, CloseHandler on_close) {
  std::shared_ptr<Connection> c(new Connection(std::move(socket), std::move(on_request), std::move(on_close)));
  asio::co_spawn(c->socket_.get_executor(), [c]() { return c->ReadLoop(); }, asio::detached);
  return c;
}

Connection::Connection(tcp::socket socket, RequestHandler on_request, CloseHandler on_close)
    : socket_(std::move(socket)), on_request_(std::move(on_request)), on_close_(std::move(on_close)) {
  boost::system::error_code ec;
  auto ep = socket_.remote_endpoint(ec);
  peer_ = ec ? "?" : ep.address().to_string() + ":" + std::to_string(ep.port());
  socket_.set_option(tcp::no_delay(true), ec);
}

void Connection::CallAsync(Message request, std::chrono::milliseconds timeout,
                           std::function<void(CallResult)> done) {
  if (closed_) {
    done(CallResult{Status::IOError("connection to " + peer_ + " is closed"), {}});
    return;
  }
  const uint64_t xid = next_xid_++;
  request.xid = xid;
  auto p = std::make_shared<Pending>(socket_.get_executor());
  p->done = std::move(done);
  p->deadline.expires_after(timeout);
  std::weak_ptr<Connection> weak = shared_from_this();
  const std::string what = std::string(OpcodeName(request.opcode)) + " to " + peer_;
  p->deadline.async_wait([weak, xid, what, timeout](boost::system::error_code ec) {
    auto self = weak.lock();
    if (ec || !self) return;  // answered, or closed, first
    auto it = self->pending_.find(xid);
    if (it == self->pending_.end()) return;
    auto pending = it->second;
    self->pending_.erase(it);
    ++self->counters_.timeouts;
    pending->done(CallResult{Status::TimedOut(what + " got no reply within " + std::to_string(timeout.count()) + " ms"), {}});
  });
  pending_.emplace(xid, p);
  Send(request);
}

awaitable<CallResult> Connection::Call(Message request, std::chrono::milliseconds timeout) {
  auto self = shared_from_this();
  struct State {
    explicit State(const asio::any_io_executor& ex) : signal(ex, asio::steady_timer::time_point::max()) {}
    asio::steady_timer signal;
    std::optional<CallResult> result;
  };
  auto state = std::make_shared<State>(socket_.get_executor());
  CallAsync(std::move(request), timeout, [state](CallResult r) {
    state->result = std::move(r);
    state->signal.cancel();
  });
  boost::system::error_code ec;
  // A timer cancelled before anyone waits on it would not wake the wait.
  if (!state->result) co_await state->signal.async_wait(asio::redirect_error(use_awaitable, ec));
  co_return std::move(*state->result);
}

void Connection::Send(const Message& m) {
  if (closed_) return;
  std::vector<uint8_t> frame;
  if (!wire::Encode(m, &frame)) {
    LogError("connection " + peer_ + ": refusing to send an over-limit message: " + Describe(m));
    return;
  }
  out_.push_back(std::move(frame));
  if (!writing_) {
    writing_ = true;
    auto self = shared_from_this();
    asio::co_spawn(socket_.get_executor(), [self]() { return self->WriteLoop(); }, asio::detached);
  }
}

awaitable<void> Connection::WriteLoop() {
  auto self = shared_from_this();
  try {
    while (!out_.empty() && !closed_) {
      std::vector<uint8_t> frame = std::move(out_.front());
      out_.pop_front();
      co_await asio::async_write(socket_, asio::buffer(frame), use_awaitable);
      ++counters_.frames_out;
      counters_.bytes_out += frame.size();
    }
  } catch (const std::exception& e) {
    Close(Status::IOError("write to " + peer_ + " failed: " + e.what()));
  }
  writing_ = false;
}

awaitable<void> Connection::ReadLoop() {
  auto self = shared_from_this();
  std::vector<uint8_t> buf;
  size_t filled = 0;
  try {
    while (!closed_) {
      // Decode every complete frame already buffered.
      size_t start = 0;
      while (!closed_) {
        Message m;
        size_t used = 0;
        wire::DecodeError err;
        auto r = wire::Decode(std::span(buf.data() + start, filled - start), &m, &used, &err);
        if (r == wire::DecodeResult::kNeedMore) break;
        if (r == wire::DecodeResult::kBad) {
          ++counters_.bad_frames;
          LogWarning("connection " + peer_ + ": refused a frame: " + err.what);
          Send(wire::ErrorReply(err));
          if (used == 0) {
            Close(Status::InvalidArgument("bad framing from " + peer_ + ": " + err.what));
            co_return;
          }
        } else {
          ++counters_.frames_in;
          Dispatch(std::move(m));
        }
        start += used;
        counters_.bytes_in += used;
      }
      if (start > 0) {
        std::memmove(buf.data(), buf.data() + start, filled - start);
        filled -= start;
      }
      // Grow only as far as the frame being read needs; the decoder has
      // already refused lengths beyond the limit.
      size_t want = filled + 64 * 1024;
      if (filled >= wire::kLengthPrefix) {
        size_t frame = wire::kLengthPrefix + ((size_t{buf[0]} << 24) | (size_t{buf[1]} << 16) |
                                              (size_t{buf[2]} << 8) | size_t{buf[3]});
        want = std::max(want, frame);
      }
      want = std::min(want, wire::kLengthPrefix + wire::kMaxFrame);
      if (buf.size() < want) buf.resize(want);
      size_t n = co_await socket_.async_read_some(asio::buffer(buf.data() + filled, buf.size() - filled), use_awaitable);
      filled += n;
    }
  } catch (const boost::system::system_error& e) {
    if (e.code() == asio::error::eof)
      Close(Status::IOError(peer_ + " closed the connection"));
    else
      Close(Status::IOError("read from " + peer_ + " failed: " + e.code().message()));
  }
}

void Connection::Dispatch(Message m) {
  if (m.opcode == Opcode::kOkReply || m.opcode == Opcode::kErrReply) {
    auto it = pending_.find(m.xid);
    if (it == pending_.end()) {
      ++counters_.late_replies;
      return;
    }
    auto p = it->second;
    pending_.erase(it);
    p->deadline.cancel();
    p->done(CallResult{Status::Ok(), std::move(m)});  // inline: in wire order
    return;
  }
  if (on_request_) on_request_(shared_from_this(), std::move(m));
}

void Connection::Close(const Status& why) {
  if (closed_) return;
  closed_ = true;
  boost::system::error_code ec;
  socket_.shutdown(tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  auto pending = std::move(pending_);
  pending_.clear();
  out_.clear();
  for (auto& [xid, p] : pending) {
    p->deadline.cancel();
    p->done(CallResult{why, {}});
  }
  if (on_close_) on_close_(shared_from_this(), why);
}

}  // namespace vshare::net
