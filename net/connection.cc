#include "net/connection.h"

#include <algorithm>
#include <cstring>
#include <optional>

#include "core/log.h"
#include "net/wire.h"

namespace vshare::net {

using asio::awaitable;
using asio::use_awaitable;

namespace {
// Frames longer than this are read into a buffer of their own, which the
// blocks cut from them keep; shorter ones share the read buffer.
constexpr size_t kOwnBufferFrom = 64 * 1024;
constexpr size_t kReadChunk = 256 * 1024;
// At most this much goes into one gathered write.
constexpr size_t kMaxWrite = 8u << 20;

// A completion condition for async_read and async_write that asks the
// socket for all that is left in each call. Asio's default (transfer_all)
// asks for at most 64 KiB, so a 1 MiB frame took 16 system calls, each a
// trip through the reactor, on both ends of the link.
struct TransferRest {
  size_t total;
  size_t operator()(const boost::system::error_code& ec, size_t done) const { return ec ? 0 : total - done; }
};
}  // namespace

void SendBudget::Add(size_t n) {
  queued_ += n;
  peak_ = std::max(peak_, queued_);
}

void SendBudget::Remove(size_t n) {
  queued_ -= std::min(queued_, n);
  if (queued_ > limit_ / 2 || paused_.empty()) return;
  std::vector<std::weak_ptr<Connection>> wake;
  wake.swap(paused_);
  for (const auto& w : wake)
    if (auto c = w.lock()) {
      c->listed_ = false;
      c->room_.cancel();
    }
}

std::shared_ptr<Connection> Connection::Start(tcp::socket socket, RequestHandler on_request, CloseHandler on_close,
                                              std::shared_ptr<SendBudget> budget) {
  std::shared_ptr<Connection> c(
      new Connection(std::move(socket), std::move(on_request), std::move(on_close), std::move(budget)));
  asio::co_spawn(c->socket_.get_executor(), [c]() { return c->ReadLoop(); }, [c](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      LogError("connection " + c->peer_ + ": internal error: " + x.what());
      c->Close(Status::IOError(std::string("internal error: ") + x.what()));
    }
  });
  return c;
}

Connection::Connection(tcp::socket socket, RequestHandler on_request, CloseHandler on_close,
                       std::shared_ptr<SendBudget> budget)
    : socket_(std::move(socket)),
      on_request_(std::move(on_request)),
      on_close_(std::move(on_close)),
      deadline_timer_(socket_.get_executor()),
      budget_(std::move(budget)),
      room_(socket_.get_executor()) {
  boost::system::error_code ec;
  auto ep = socket_.remote_endpoint(ec);
  peer_ = ec ? "?" : ep.address().to_string() + ":" + std::to_string(ep.port());
  socket_.set_option(tcp::no_delay(true), ec);
}

void Connection::CallAsync(Message request, std::chrono::milliseconds timeout,
                           std::function<void(CallResult)> done, bool urgent) {
  if (closed_) {
    done(CallResult{Status::IOError("connection to " + peer_ + " is closed"), {}});
    return;
  }
  const uint64_t xid = next_xid_++;
  request.xid = xid;
  const Clock::time_point deadline = Clock::now() + timeout;
  pending_.emplace(xid, Pending{std::move(done), deadline,
                                std::string(OpcodeName(request.opcode)) + " to " + peer_ + " got no reply within " +
                                    std::to_string(timeout.count()) + " ms"});
  deadlines_.emplace(deadline, xid);
  ArmDeadline();
  Send(request, urgent);
}

// One timer for the link, set for the earliest deadline.
void Connection::ArmDeadline() {
  while (!deadlines_.empty() && !pending_.count(deadlines_.begin()->second)) deadlines_.erase(deadlines_.begin());
  if (deadlines_.empty() || deadlines_.begin()->first >= armed_for_) return;
  armed_for_ = deadlines_.begin()->first;
  deadline_timer_.expires_at(armed_for_);
  std::weak_ptr<Connection> weak = shared_from_this();
  deadline_timer_.async_wait([weak](boost::system::error_code ec) {
    auto self = weak.lock();
    if (!self || ec) return;  // re-armed earlier, or closed
    self->armed_for_ = Clock::time_point::max();
    self->Expire();
  });
}

void Connection::Expire() {
  const Clock::time_point now = Clock::now();
  while (!deadlines_.empty() && deadlines_.begin()->first <= now && !closed_) {
    const uint64_t xid = deadlines_.begin()->second;
    deadlines_.erase(deadlines_.begin());
    auto it = pending_.find(xid);
    if (it == pending_.end()) continue;  // answered
    Pending p = std::move(it->second);
    pending_.erase(it);
    ++counters_.timeouts;
    p.done(CallResult{Status::TimedOut(p.what), {}});
  }
  if (!closed_) ArmDeadline();
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
    if (!r.final) return;
    state->result = std::move(r);
    state->signal.cancel();
  });
  boost::system::error_code ec;
  // A timer cancelled before anyone waits on it would not wake the wait.
  if (!state->result) co_await state->signal.async_wait(asio::redirect_error(use_awaitable, ec));
  co_return std::move(*state->result);
}

void Connection::Send(const Message& m, bool urgent) {
  if (closed_) return;
  OutFrame f;
  if (!wire::EncodeAround(m, &f.head, &f.tail)) {
    LogError("connection " + peer_ + ": refusing to send an over-limit message: " + Describe(m));
    return;
  }
  if (m.data) f.data = *m.data;
  const size_t n = f.head.size() + f.data.size() + f.tail.size();
  queued_ += n;
  if (budget_) budget_->Add(n);
  (urgent ? urgent_ : out_).push_back(std::move(f));
  if (!writing_) {
    writing_ = true;
    auto self = shared_from_this();
    asio::co_spawn(socket_.get_executor(), [self]() { return self->WriteLoop(); }, [self](std::exception_ptr e) {
      if (e) self->Close(Status::IOError("write loop failed"));
    });
  }
}

awaitable<void> Connection::WriteLoop() {
  auto self = shared_from_this();
  std::vector<OutFrame> batch;
  std::vector<asio::const_buffer> bufs;
  try {
    while ((!out_.empty() || !urgent_.empty()) && !closed_) {
      // Everything queued meanwhile goes in one write, urgent frames first.
      batch.clear();
      bufs.clear();
      size_t bytes = 0;
      while ((!out_.empty() || !urgent_.empty()) && (batch.empty() || bytes < kMaxWrite)) {
        auto& from = urgent_.empty() ? out_ : urgent_;
        batch.push_back(std::move(from.front()));
        from.pop_front();
        const OutFrame& f = batch.back();
        bytes += f.head.size() + f.data.size() + f.tail.size();
      }
      for (const OutFrame& f : batch) {
        bufs.emplace_back(f.head.data(), f.head.size());
        if (!f.data.empty()) bufs.emplace_back(f.data.data(), f.data.size());
        if (!f.tail.empty()) bufs.emplace_back(f.tail.data(), f.tail.size());
      }
      writing_bytes_ = bytes;
      boost::system::error_code ec;
      co_await asio::async_write(socket_, bufs, TransferRest{bytes}, asio::redirect_error(use_awaitable, ec));
      writing_bytes_ = 0;
      const size_t frames = batch.size();
      batch.clear();  // the bytes may go now
      Unqueue(bytes);
      if (ec) throw boost::system::system_error(ec);
      counters_.frames_out += frames;
      counters_.bytes_out += bytes;
      ++counters_.writes;
    }
  } catch (const std::exception& e) {
    Close(Status::IOError("write to " + peer_ + " failed: " + e.what()));
  }
  writing_ = false;
  if (close_when_sent_ && out_.empty() && urgent_.empty()) Close(*close_when_sent_);
}

void Connection::Unqueue(size_t n) {
  queued_ -= std::min(queued_, n);
  if (!budget_) return;
  budget_->Remove(n);
  if (queued_ == 0) room_.cancel();  // its own answers are out: it may read one more
}

awaitable<void> Connection::WaitForRoom() {
  while (MustPause() && !closed_) {
    ++budget_->pauses_;
    if (!listed_) {  // once: a link woken by its own queue may pause again before the group wakes
      listed_ = true;
      budget_->paused_.push_back(weak_from_this());
    }
    room_.expires_at(asio::steady_timer::time_point::max());
    boost::system::error_code ec;
    co_await room_.async_wait(asio::redirect_error(use_awaitable, ec));
  }
}

awaitable<void> Connection::ReadLoop() {
  auto self = shared_from_this();
  std::vector<uint8_t> buf(kReadChunk);
  size_t filled = 0;
  try {
    while (!closed_) {
      // Decode every complete frame already buffered.
      size_t start = 0;
      while (!closed_) {
        if (MustPause()) co_await WaitForRoom();
        if (closed_) break;
        if (filled - start >= wire::kLengthPrefix) {
          const size_t len = (size_t{buf[start]} << 24) | (size_t{buf[start + 1]} << 16) |
                             (size_t{buf[start + 2]} << 8) | size_t{buf[start + 3]};
          const size_t frame = wire::kLengthPrefix + len;
          if (frame > kOwnBufferFrom && len <= wire::kMaxFrame && filled - start < frame) {
            // A large frame: read the rest of it into a buffer of its own.
            uint8_t* w;
            Bytes own = Bytes::Allocate(frame, &w);
            const size_t have = filled - start;
            std::memcpy(w, buf.data() + start, have);
            co_await asio::async_read(socket_, asio::buffer(w + have, frame - have), TransferRest{frame - have},
                                      use_awaitable);
            counters_.bytes_in += frame;
            Message m;
            size_t used = 0;
            wire::DecodeError err;
            if (wire::Decode(own.span(), &m, &used, &err, &own) == wire::DecodeResult::kGood) {
              ++counters_.frames_in;
              Dispatch(std::move(m));
            } else {
              ++counters_.bad_frames;
              LogWarning("connection " + peer_ + ": refused a frame: " + err.what);
              Send(wire::ErrorReply(err));
            }
            start = filled;  // all of the buffer was this frame's
            continue;
          }
        }
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
      if (filled == buf.size()) buf.resize(buf.size() * 2);  // a small frame larger than the buffer: grow
      const size_t n =
          co_await socket_.async_read_some(asio::buffer(buf.data() + filled, buf.size() - filled), use_awaitable);
      filled += n;
    }
  } catch (const boost::system::system_error& e) {
    if (e.code() == asio::error::eof)
      Close(Status::IOError(peer_ + " closed the connection"));
    else
      Close(Status::IOError("read from " + peer_ + " failed: " + e.code().message()));
  } catch (const std::exception& e) {  // from a handler: the link cannot go on
    LogError("connection " + peer_ + ": internal error: " + e.what());
    Close(Status::IOError(std::string("internal error: ") + e.what()));
  }
}

void Connection::Dispatch(Message m) {
  if (m.opcode == Opcode::kOkReply || m.opcode == Opcode::kErrReply) {
    auto it = pending_.find(m.xid);
    if (it == pending_.end()) {
      ++counters_.late_replies;
      return;
    }
    const bool final = !(m.flags & msg_flags::kMore);
    if (final) {
      Pending p = std::move(it->second);
      pending_.erase(it);
      p.done(CallResult{Status::Ok(), std::move(m), true});  // inline: in wire order
    } else {
      std::function<void(CallResult)> done = it->second.done;  // it may be closed by the handler
      done(CallResult{Status::Ok(), std::move(m), false});
    }
    return;
  }
  if (on_request_) on_request_(shared_from_this(), std::move(m));
}

void Connection::CloseWhenSent(const Status& why, std::chrono::milliseconds grace) {
  if (closed_ || close_when_sent_) return;
  if (!writing_ && out_.empty() && urgent_.empty()) return Close(why);
  close_when_sent_ = why;
  auto timer = std::make_shared<asio::steady_timer>(socket_.get_executor(), grace);
  timer->async_wait([self = shared_from_this(), timer, why](const boost::system::error_code&) { self->Close(why); });
}

void Connection::Close(const Status& why) {
  if (closed_) return;
  closed_ = true;
  boost::system::error_code ec;
  socket_.shutdown(tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  deadline_timer_.cancel();
  room_.cancel();
  auto pending = std::move(pending_);
  pending_.clear();
  deadlines_.clear();
  out_.clear();
  urgent_.clear();
  // What was queued here will not be written: the group has room for it.
  // (A write under way gives back its batch when it ends.)
  if (budget_) budget_->Remove(queued_ - writing_bytes_);
  queued_ = writing_bytes_;
  for (auto& [xid, p] : pending) p.done(CallResult{why, {}});
  if (on_close_) on_close_(shared_from_this(), why);
}

}  // namespace vshare::net
