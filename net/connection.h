// Connection: one TCP link between two nodes, carrying wire frames both ways.
//
// Either end may send requests and receive them. Call() sends a request
// under a fresh XID and waits for the OK_REPLY or ERR_REPLY with that XID,
// at most until its deadline; any number of calls may be in flight and their
// replies may arrive in any order. Every other incoming message (requests,
// INVALIDATE, PUSH, HEARTBEAT...) goes to the request handler, which answers
// with Send() using the request's XID.
//
// A frame that fails to decode is answered with the matching ERR_REPLY and
// the stream goes on; a frame whose length is impossible closes the
// connection. Closing, for any reason, fails every pending call at once.
//
// Order: every incoming frame is handed over in the order it arrived, a
// reply (to CallAsync's callback) exactly like a request (to the handler).
// The tree protocol depends on it: a grant followed by an INVALIDATE must
// be seen in that order.
//
// Threading: a Connection belongs to one executor (strand or single-threaded
// io_context); call its methods only from there.
#pragma once

#include <boost/asio.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <unordered_map>

#include "core/message.h"
#include "core/status.h"

namespace vshare::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

struct CallResult {
  Status status;  // ok when a reply arrived (which may itself be an ERR_REPLY)
  Message reply;
};

struct ConnectionCounters {
  uint64_t frames_in = 0;
  uint64_t frames_out = 0;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  uint64_t bad_frames = 0;      // refused with an ERR_REPLY
  uint64_t late_replies = 0;    // replies whose call had already timed out
  uint64_t timeouts = 0;
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  using RequestHandler = std::function<void(const std::shared_ptr<Connection>&, Message)>;
  using CloseHandler = std::function<void(const std::shared_ptr<Connection>&, const Status&)>;

  // Takes an open socket and starts reading. Handlers run on the socket's
  // executor.
  static std::shared_ptr<Connection> Start(tcp::socket socket, RequestHandler on_request,
                                           CloseHandler on_close = nullptr);

  // Sends `request` with a new XID; `done` runs exactly once: with the
  // reply, inline as it is read (so in wire order with requests); with
  // kTimedOut at the deadline; or with kIOError when the connection closes.
  void CallAsync(Message request, std::chrono::milliseconds timeout, std::function<void(CallResult)> done);
  // The same, awaited.
  asio::awaitable<CallResult> Call(Message request, std::chrono::milliseconds timeout);

  // Queues `m` for sending, in order. Dropped if the connection is closed.
  void Send(const Message& m);

  // Closes the socket and fails every pending call with `why`. Idempotent.
  void Close(const Status& why);

  bool closed() const { return closed_; }
  const ConnectionCounters& counters() const { return counters_; }
  std::string peer() const { return peer_; }
  size_t pending_calls() const { return pending_.size(); }

 private:
  struct Pending {
    explicit Pending(const asio::any_io_executor& ex) : deadline(ex) {}
    asio::steady_timer deadline;
    std::function<void(CallResult)> done;
  };

  Connection(tcp::socket socket, RequestHandler on_request, CloseHandler on_close);
  asio::awaitable<void> ReadLoop();
  asio::awaitable<void> WriteLoop();
  void Dispatch(Message m);

  tcp::socket socket_;
  RequestHandler on_request_;
  CloseHandler on_close_;
  std::string peer_;
  bool closed_ = false;
  bool writing_ = false;
  std::deque<std::vector<uint8_t>> out_;
  uint64_t next_xid_ = 1;
  std::unordered_map<uint64_t, std::shared_ptr<Pending>> pending_;
  ConnectionCounters counters_;
};

}  // namespace vshare::net
