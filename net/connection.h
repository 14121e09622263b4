// Connection: one TCP link between two nodes, carrying wire frames both ways.
//
// Either end may send requests and receive them. CallAsync() sends a request
// under a fresh XID and hands over the OK_REPLY or ERR_REPLY with that XID,
// or the failure at its deadline; any number of calls may be in flight and
// their replies may arrive in any order. A reply with the MORE flag is one
// part of the answer to a range request: it is handed over, and the call
// stays open until the part without it. Every other incoming message
// (requests, INVALIDATE, PUSH, HEARTBEAT...) goes to the request handler,
// which answers with Send() using the request's XID.
//
// A frame that fails to decode is answered with the matching ERR_REPLY and
// the stream goes on; a frame whose length is impossible closes the
// connection. Closing, for any reason, fails every pending call at once.
//
// Order: every incoming frame is handed over in the order it arrived, a
// reply (to CallAsync's callback) exactly like a request (to the handler).
// The tree protocol depends on it: a grant followed by an INVALIDATE must
// be seen in that order. Frames are sent in the order queued, except that
// urgent ones (HEARTBEATs and their answers, which say nothing about any
// block) go ahead of those not yet written: a lease's renewal must not wait
// behind megabytes of block data.
//
// Cost: frames queued while a write is under way go out together in one
// gathered write; block data is never copied into a frame (it is sent from
// the Bytes it is in), and a large frame is read into a buffer of its own
// that the blocks cut from it keep alive. Deadlines are kept in one ordered
// map with one timer for the whole link.
//
// Memory: a group of links may share a SendBudget (a node's child links
// do). While the bytes queued on the group's links exceed its limit, a link
// of the group that has bytes of its own queued reads nothing more from its
// peer: the peer's requests wait in the socket, and TCP holds back the
// rest. So what a node has queued for its children is the limit plus at
// most one answer per child (the one that crossed it), instead of each
// child's whole request window (32 MiB each). Answers still being filled
// (a range waiting for its parent's bytes) are not counted. The peer of
// such a link never pauses its reads from us (only the side that accepted
// the link has a budget), so two links can never each wait for the other
// to read.
//
// Threading: a Connection belongs to one executor (strand or single-threaded
// io_context); call its methods only from there. Handlers run there too; an
// exception from one closes the link and is logged, never lost.
#pragma once

#include <boost/asio.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "core/message.h"
#include "core/status.h"

namespace vshare::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

struct CallResult {
  Status status;  // ok when a reply arrived (which may itself be an ERR_REPLY)
  Message reply;
  bool final = true;  // false: a part, more of the answer follows
};

struct ConnectionCounters {
  uint64_t frames_in = 0;
  uint64_t frames_out = 0;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  uint64_t writes = 0;          // socket writes (each may carry several frames)
  uint64_t bad_frames = 0;      // refused with an ERR_REPLY
  uint64_t late_replies = 0;    // replies whose call had already timed out
  uint64_t timeouts = 0;
};

class Connection;

// The bytes queued for sending on a group of links, and their limit. On the
// links' executor only.
class SendBudget {
 public:
  explicit SendBudget(size_t limit) : limit_(limit) {}
  size_t limit() const { return limit_; }
  size_t queued() const { return queued_; }
  size_t peak() const { return peak_; }       // the most queued at once
  uint64_t pauses() const { return pauses_; }  // times a link stopped reading

 private:
  friend class Connection;
  void Add(size_t n);
  void Remove(size_t n);  // wakes the paused links once below half the limit

  size_t limit_;
  size_t queued_ = 0, peak_ = 0;
  uint64_t pauses_ = 0;
  std::vector<std::weak_ptr<Connection>> paused_;
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  using RequestHandler = std::function<void(const std::shared_ptr<Connection>&, Message)>;
  using CloseHandler = std::function<void(const std::shared_ptr<Connection>&, const Status&)>;

  // Takes an open socket and starts reading. Handlers run on the socket's
  // executor.
  // With a `budget`, the link counts what it queues against it and stops
  // reading while the group is over its limit (see Memory above).
  static std::shared_ptr<Connection> Start(tcp::socket socket, RequestHandler on_request,
                                           CloseHandler on_close = nullptr,
                                           std::shared_ptr<SendBudget> budget = nullptr);

  // Sends `request` with a new XID; `done` runs for each part of the reply,
  // inline as it is read (so in wire order with requests), and then no more;
  // or once with kTimedOut at the deadline, or kIOError when the connection
  // closes.
  void CallAsync(Message request, std::chrono::milliseconds timeout, std::function<void(CallResult)> done,
                 bool urgent = false);
  // The same, awaited: the final part (or the failure).
  asio::awaitable<CallResult> Call(Message request, std::chrono::milliseconds timeout);

  // Queues `m` for sending, in order. Dropped if the connection is closed.
  // An urgent message goes ahead of every non-urgent one not yet written
  // (in order with the other urgent ones).
  void Send(const Message& m, bool urgent = false);

  // Closes the socket and fails every pending call with `why`. Idempotent.
  void Close(const Status& why);

  // Closes once what is queued has been written (a refusal must reach the
  // peer before the link goes), or after `grace` at the latest.
  void CloseWhenSent(const Status& why, std::chrono::milliseconds grace = std::chrono::seconds(1));

  bool closed() const { return closed_; }
  const ConnectionCounters& counters() const { return counters_; }
  std::string peer() const { return peer_; }
  size_t pending_calls() const { return pending_.size(); }

 private:
  friend class SendBudget;  // wakes paused links
  using Clock = std::chrono::steady_clock;
  struct Pending {
    std::function<void(CallResult)> done;
    Clock::time_point deadline;
    std::string what;  // for the timeout's message
  };
  struct OutFrame {
    std::vector<uint8_t> head;  // the frame up to DATA's bytes
    Bytes data;                 // DATA's bytes, sent where they are
    std::vector<uint8_t> tail;  // what follows them
  };

  Connection(tcp::socket socket, RequestHandler on_request, CloseHandler on_close,
             std::shared_ptr<SendBudget> budget);
  asio::awaitable<void> ReadLoop();
  // Before each frame is taken: waits while the budget says not to read.
  asio::awaitable<void> WaitForRoom();
  bool MustPause() const { return budget_ && queued_ > 0 && budget_->queued_ > budget_->limit_; }
  void Unqueue(size_t n);
  asio::awaitable<void> WriteLoop();
  void Dispatch(Message m);
  void ArmDeadline();
  void Expire();

  tcp::socket socket_;
  RequestHandler on_request_;
  CloseHandler on_close_;
  std::string peer_;
  bool closed_ = false;
  bool writing_ = false;
  std::optional<Status> close_when_sent_;
  std::deque<OutFrame> out_;
  std::deque<OutFrame> urgent_;  // written before out_
  uint64_t next_xid_ = 1;
  std::unordered_map<uint64_t, Pending> pending_;
  std::multimap<Clock::time_point, uint64_t> deadlines_;  // -> xid (stale entries are skipped)
  asio::steady_timer deadline_timer_;
  Clock::time_point armed_for_ = Clock::time_point::max();
  ConnectionCounters counters_;
  std::shared_ptr<SendBudget> budget_;
  size_t queued_ = 0;          // bytes queued here and not yet written
  size_t writing_bytes_ = 0;   // of which the write under way
  asio::steady_timer room_;    // a paused read waits on it; cancelled to wake it
  bool listed_ = false;        // in budget_->paused_
};

}  // namespace vshare::net
