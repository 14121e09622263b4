// The link to the parent: dialing, the first join, joining again after the
// link is lost (with back-off), and reparenting on request.
#include <thread>

#include "core/log.h"
#include "core/parent_choice.h"
#include "net/tree_node.h"

namespace vshare::net {

namespace {

bool SplitHostPort(const std::string& s, std::string* host, std::string* port) {
  size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == s.size()) return false;
  *host = s.substr(0, colon);
  *port = s.substr(colon + 1);
  if (host->front() == '[' && host->back() == ']') *host = host->substr(1, host->size() - 2);
  return true;
}

// Between rounds of dialing every place we know: from 200 ms, doubling, at
// most 5 s. A parent that is gone for good costs a dial every few seconds,
// not a busy loop.
constexpr auto kFirstPause = std::chrono::milliseconds(200);
constexpr auto kMaxPause = std::chrono::milliseconds(5000);

}  // namespace

asio::awaitable<std::optional<tcp::socket>> TreeNode::Dial(const std::string& address,
                                                           std::chrono::steady_clock::time_point give_up,
                                                           std::string* why, Status::Code* code, const char* what) {
  std::string host, port;
  if (!SplitHostPort(address, &host, &port)) {
    *why = std::string("bad ") + what + " address '" + address + "' (want HOST:PORT)";
    *code = Status::Code::kInvalidArgument;
    co_return std::nullopt;
  }
  boost::system::error_code ec;
  tcp::resolver resolver(io_);
  auto eps = co_await resolver.async_resolve(host, port, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    *why = std::string("cannot resolve ") + what + " " + address + ": " + ec.message();
    *code = Status::Code::kNotFound;
    co_return std::nullopt;
  }
  // A parent that is still starting refuses connections for a moment: try
  // again (every 200 ms, then less often) until give_up. The timer ends a
  // hanging attempt.
  auto pause = std::chrono::milliseconds(200);
  for (;;) {
    tcp::socket socket(io_);
    asio::steady_timer deadline(io_, give_up);
    deadline.async_wait([&socket](boost::system::error_code e) {
      if (!e) socket.close();
    });
    co_await asio::async_connect(socket, eps, asio::redirect_error(asio::use_awaitable, ec));
    deadline.cancel();
    if (!ec && socket.is_open()) co_return std::move(socket);
    if (stopped_ || std::chrono::steady_clock::now() + pause >= give_up) {
      *why = std::string("cannot connect to ") + what + " " + address + ": " + (ec ? ec.message() : "timed out");
      *code = Status::Code::kIOError;
      co_return std::nullopt;
    }
    asio::steady_timer t(io_, pause);
    co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    pause = std::min(pause * 2, std::chrono::milliseconds(1000));
  }
}

void TreeNode::AttachParent(tcp::socket socket, const std::string& address) {
  replica_.SetParentAddress(address);
  current_parent_ = address;
  parent_ = Connection::Start(
      std::move(socket),
      [this](const std::shared_ptr<Connection>&, Message m) {
        traffic_.FromParent(m);
        replica_.OnParentMessage(m, Now());
        Drain();
      },
      [this](const std::shared_ptr<Connection>& conn, const Status& why) {
        if (stopped_) {
          LogInfo("connection to parent " + current_parent_ + " closed: " + why.message());
          return;
        }
        LogWarning("connection to parent " + current_parent_ + " lost: " + why.message());
        if (conn != parent_) return;  // an older link
        replica_.OnParentLost(Now());
        Drain();
        if (!reconnecting_ && !joining_) {
          reconnecting_ = true;
          Spawn(Reconnect(), "reconnect");
        }
      });
}

asio::awaitable<void> TreeNode::ConnectParent() {
  std::string why;
  Status::Code code = Status::Code::kIOError;
  std::optional<tcp::socket> socket =
      co_await Dial(opts_.parent, std::chrono::steady_clock::now() + opts_.io_timeout, &why, &code);
  if (!socket) {
    std::lock_guard lock(join_mu_);
    join_done_ = true;
    join_status_ = Status::WithCode(code, why);
    join_cv_.notify_all();
    co_return;
  }
  AttachParent(std::move(*socket), opts_.parent);
  joining_ = true;
  replica_.Start(Now());
  Drain();
}

// Joining ends when the engine is joined or has given up.
void TreeNode::FinishJoin() {
  if (!joining_ || replica_.connecting()) return;
  joining_ = false;
  Status st;
  if (replica_.connected()) {
    table_ = replica_.table();
  } else if (replica_.connect_refusal() == WireStatus::kNoSuchVolume) {
    st = Status::NotFound("parent " + opts_.parent + " does not serve volume " + cfg_name_ +
                          (replica_.table() ? ": " + replica_.connect_error() : ""));
  } else {
    st = Status::IOError("cannot join volume " + cfg_name_ + " at " + opts_.parent + ": " + replica_.connect_error());
  }
  Publish();
  std::lock_guard lock(join_mu_);
  join_done_ = true;
  join_status_ = st;
  join_cv_.notify_all();
}

asio::awaitable<void> TreeNode::Reconnect() {
  reconnecting_ = true;
  const std::string lost = current_parent_;
  auto pause = kFirstPause;
  boost::system::error_code ec;
  while (!stopped_) {
    const std::vector<std::string> candidates =
        NextParents(preferred_parent_, replica_.upstream(), opts_.fallback_parents, opts_.parent, lost);
    // With several places to go, a dead one costs half a second, not two:
    // a standby root that takes over is found soon after.
    const auto per_try = std::chrono::milliseconds(candidates.size() > 1 ? 500 : 2000);
    bool joined = false;
    for (const std::string& address : candidates) {
      if (stopped_) break;
      std::string why;
      Status::Code code;
      std::optional<tcp::socket> socket = co_await Dial(address, std::chrono::steady_clock::now() + per_try, &why, &code);
      if (stopped_) break;
      if (!socket) {
        LogWarning("volume " + cfg_name_ + ": " + why);
        continue;
      }
      AttachParent(std::move(*socket), address);
      replica_.Rejoin(Now());
      Drain();
      // Wait for the CONNECT's answer (its call has the io_timeout deadline).
      while (!stopped_ && replica_.connecting()) {
        asio::steady_timer t(io_, std::chrono::milliseconds(20));
        co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      }
      if (replica_.connected()) {
        const bool moved = address != lost;
        if (moved) ++reparents_;
        LogInfo("volume " + cfg_name_ + ": joined " + address + (moved ? " (reparented)" : ""));
        joined = true;
        break;
      }
      LogWarning("volume " + cfg_name_ + ": joining " + address + " failed: " + replica_.connect_error());
      if (parent_) parent_->Close(Status::IOError("join failed"));
    }
    if (joined || stopped_) break;
    asio::steady_timer t(io_, pause);
    co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    pause = std::min(pause * 2, kMaxPause);
  }
  preferred_parent_.clear();
  reconnecting_ = false;
  Publish();
}

Status TreeNode::Reparent(const std::string& address) {
  if (opts_.parent.empty()) return Status::InvalidArgument("the root has no parent to change");
  std::string host, port;
  if (!SplitHostPort(address, &host, &port))
    return Status::InvalidArgument("bad parent address '" + address + "' (want HOST:PORT)");
  // Nothing may exist only here when the old link goes.
  if (Status st = Sync(); !st.ok()) return Status::IOError("reparent: the sync barrier failed, staying: " + st.message());
  asio::post(io_, [this, address] {
    preferred_parent_ = address;
    if (parent_ && !parent_->closed()) parent_->Close(Status::IOError("reparenting to " + address + " on request"));
  });
  const auto give_up = std::chrono::steady_clock::now() + opts_.io_timeout;
  while (std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const TreeStatus s = status();
    if (s.parent == address && s.connected) return Status::Ok();
  }
  return Status::TimedOut("could not join " + address + " within " + std::to_string(opts_.io_timeout.count()) +
                          " ms; now below " + status().parent);
}

}  // namespace vshare::net
