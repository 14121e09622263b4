#include "net/tree_node.h"

#include "core/daemon.h"
#include "core/log.h"

namespace vshare::net {

namespace {

// "host:port" into its parts; false when malformed. "[::1]:7000" works too.
bool SplitHostPort(const std::string& s, std::string* host, std::string* port) {
  size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == s.size()) return false;
  *host = s.substr(0, colon);
  *port = s.substr(colon + 1);
  if (host->front() == '[' && host->back() == ']') *host = host->substr(1, host->size() - 2);
  return true;
}

ReplicaConfig WithRole(ReplicaConfig cfg, const TreeNodeOptions& opts) {
  cfg.is_root = opts.parent.empty();
  return cfg;
}

}  // namespace

TreeNode::TreeNode(TreeNodeOptions opts, ReplicaConfig cfg, BlockData* data)
    : opts_(std::move(opts)),
      data_(data),
      replica_(WithRole(std::move(cfg), opts_), data),
      work_(io_.get_executor()),
      acceptor_(io_) {
  if (replica_.config().is_root && !opts_.peer.empty()) {
    role_.emplace(opts_.standby, replica_.config().hb_ttl_ms, replica_.margin_ms());
    replica_.SetAuthority(role_->ServingUntil(), Now());  // nothing until the role says so
  }
}

TreeNode::~TreeNode() { Stop(); }

Status TreeNode::Start() {
  if (!opts_.listen.empty()) {
    std::string host, port;
    if (!SplitHostPort(opts_.listen, &host, &port)) return Status::InvalidArgument("bad listen address '" + opts_.listen + "' (want HOST:PORT)");
    boost::system::error_code ec;
    tcp::resolver resolver(io_);
    auto eps = resolver.resolve(host, port, ec);
    if (ec || eps.empty()) return Status::InvalidArgument("cannot resolve listen address " + opts_.listen + ": " + ec.message());
    tcp::endpoint ep = eps.begin()->endpoint();
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return Status::Busy("cannot listen on " + opts_.listen + ": " + ec.message());
    port_ = acceptor_.local_endpoint().port();
  }
  {
    TerminationSignalsBlocked blocked;  // signals are for the main thread
    thread_ = std::thread([this] { io_.run(); });
  }
  // Children are accepted only once this node serves the volume itself:
  // until then they wait in the listen backlog. (Accepting earlier let a
  // child's CONNECT start an upward join before our parent link existed.)
  auto accept_children = [this] {
    if (acceptor_.is_open()) asio::co_spawn(io_, AcceptLoop(), asio::detached);
  };
  asio::co_spawn(io_, TickLoop(), asio::detached);
  if (role_) asio::co_spawn(io_, PeerLoop(), asio::detached);
  if (opts_.parent.empty()) {
    accept_children();
    return Status::Ok();
  }
  auto joined = std::make_shared<Waiter>();
  asio::co_spawn(io_, ConnectParent(joined), asio::detached);
  std::unique_lock lock(joined->mu);
  if (!joined->cv.wait_for(lock, opts_.io_timeout, [&] { return joined->done; }))
    return Status::TimedOut("no answer from parent " + opts_.parent + " within " +
                            std::to_string(opts_.io_timeout.count()) + " ms");
  if (joined->status.ok()) accept_children();
  return joined->status;
}

void TreeNode::Stop() {
  if (stopped_) return;
  // A standby the active root leans on says it is going, so that the
  // active root serves on instead of stopping when its root lease lapses.
  if (role_ && thread_.joinable()) {
    auto told = std::make_shared<Waiter>();
    asio::post(io_, [this, told] {
      std::vector<std::shared_ptr<Connection>> peers;
      if (role_->Leave())
        for (LinkId l : peer_links_)
          if (auto it = children_.find(l); it != children_.end()) peers.push_back(it->second);
      std::lock_guard lock(told->mu);
      told->remaining = peers.size();
      told->done = peers.empty();
      if (told->done) told->cv.notify_all();
      for (auto& p : peers) {
        Message bye;
        bye.opcode = Opcode::kDisconnect;
        bye.connect_flags = connect_flags::kStandby;
        p->CallAsync(bye, std::chrono::milliseconds(500), [told](CallResult) {
          std::lock_guard l(told->mu);
          if (--told->remaining == 0) {
            told->done = true;
            told->cv.notify_all();
          }
        });
      }
    });
    std::unique_lock lock(told->mu);
    told->cv.wait_for(lock, std::chrono::seconds(1), [&] { return told->done; });
  }
  // Tell the parent we are going, so it need not wait out our lease.
  if (thread_.joinable() && !opts_.parent.empty())
    RunLocal({[](Replica& r, Time now) { return r.LeaveLocal(now); }}, nullptr);
  stopped_ = true;
  if (thread_.joinable()) {
    asio::post(io_, [this] {
      boost::system::error_code ec;
      acceptor_.close(ec);
      if (parent_) parent_->Close(Status::IOError("node stopping"));
      for (auto& [link, c] : std::map(children_)) c->Close(Status::IOError("node stopping"));
      for (auto& [op, entry] : waiters_) {
        std::shared_ptr<Waiter> w = entry.first;
        std::lock_guard lock(w->mu);
        w->done = true;
        if (w->status.ok()) w->status = Status::IOError("node stopped");
        w->cv.notify_all();
      }
      waiters_.clear();
      // Whatever is still waiting (calls, timers) is abandoned, not run.
      io_.stop();
    });
    work_.reset();
    thread_.join();
  }
}

asio::awaitable<void> TreeNode::AcceptLoop() {
  for (;;) {
    boost::system::error_code ec;
    tcp::socket socket = co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;  // closed
    const LinkId link = next_link_++;
    auto conn = Connection::Start(
        std::move(socket),
        [this, link](const std::shared_ptr<Connection>& self, Message m) {
          if (m.opcode == Opcode::kConnect && m.connect_flags && (*m.connect_flags & connect_flags::kIsRoot))
            return AnswerPeer(link, self, m);
          traffic_.FromChild(m);
          if (m.opcode == Opcode::kIoRequest) {
            std::lock_guard lock(counters_mu_);
            ++counters_.requests_served;
          }
          replica_.OnChildMessage(link, m, Now());
          Drain();
        },
        [this, link](const std::shared_ptr<Connection>&, const Status& why) {
          if (!peer_links_.erase(link)) LogInfo("child link " + std::to_string(link) + " closed: " + why.message());
          children_.erase(link);
          replica_.OnChildGone(link, Now());
          {
            std::lock_guard lock(counters_mu_);
            counters_.children = children_.size() - peer_links_.size();
            child_addresses_.erase(link);
          }
          Drain();
        });
    children_[link] = conn;
    std::lock_guard lock(counters_mu_);
    counters_.children = children_.size();
    child_addresses_[link] = conn->peer();
  }
}

asio::awaitable<std::optional<tcp::socket>> TreeNode::DialParent(const std::string& address,
                                                                  std::chrono::steady_clock::time_point give_up,
                                                                  std::string* why, const char* what) {
  std::string host, port;
  if (!SplitHostPort(address, &host, &port)) {
    *why = std::string("bad ") + what + " address '" + address + "' (want HOST:PORT)";
    co_return std::nullopt;
  }
  boost::system::error_code ec;
  tcp::resolver resolver(io_);
  auto eps = co_await resolver.async_resolve(host, port, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    *why = std::string("cannot resolve ") + what + " " + address + ": " + ec.message();
    co_return std::nullopt;
  }
  tcp::socket socket(io_);
  // A parent that is still starting refuses connections for a moment: try
  // again every 200 ms until give_up. The timer ends a hanging attempt.
  for (;;) {
    asio::steady_timer deadline(io_, give_up);
    deadline.async_wait([&socket](boost::system::error_code e) {
      if (!e) socket.close();
    });
    co_await asio::async_connect(socket, eps, asio::redirect_error(asio::use_awaitable, ec));
    deadline.cancel();
    if (!ec) co_return std::move(socket);
    if (stopped_ || std::chrono::steady_clock::now() + std::chrono::milliseconds(200) >= give_up) {
      *why = std::string("cannot connect to ") + what + " " + address + ": " + ec.message();
      co_return std::nullopt;
    }
    asio::steady_timer pause(io_, std::chrono::milliseconds(200));
    co_await pause.async_wait(asio::use_awaitable);
    socket = tcp::socket(io_);
  }
}

void TreeNode::AttachParent(tcp::socket socket, const std::string& address) {
  replica_.SetParentAddress(address);
  {
    std::lock_guard lock(counters_mu_);
    current_parent_ = address;
  }
  parent_ = Connection::Start(
      std::move(socket),
      [this](const std::shared_ptr<Connection>&, Message m) {
        traffic_.FromParent(m);
        replica_.OnParentMessage(m, Now());
        Drain();
      },
      [this](const std::shared_ptr<Connection>& conn, const Status& why) {
        const std::string was = parent_address();
        if (stopped_) {
          LogInfo("connection to parent " + was + " closed: " + why.message());
          return;
        }
        LogWarning("connection to parent " + was + " lost: " + why.message());
        if (conn != parent_) return;  // an older link
        replica_.OnParentLost(Now());
        Drain();
        if (!reconnecting_ && !join_waiter_) asio::co_spawn(io_, Reconnect(), asio::detached);
      });
}

asio::awaitable<void> TreeNode::ConnectParent(std::shared_ptr<Waiter> joined) {
  std::string why;
  std::optional<tcp::socket> socket =
      co_await DialParent(opts_.parent, std::chrono::steady_clock::now() + opts_.io_timeout, &why);
  if (!socket) {
    std::lock_guard lock(joined->mu);
    joined->done = true;
    joined->status = why.starts_with("bad parent") ? Status::InvalidArgument(why)
                     : why.starts_with("cannot resolve") ? Status::NotFound(why)
                                                         : Status::IOError(why);
    joined->cv.notify_all();
    co_return;
  }
  AttachParent(std::move(*socket), opts_.parent);
  join_waiter_ = joined;
  replica_.Start(Now());
  Drain();
}

std::vector<std::string> TreeNode::Candidates() const {
  std::vector<std::string> out;
  auto add = [&out](const std::string& a) {
    if (!a.empty() && std::find(out.begin(), out.end(), a) == out.end()) out.push_back(a);
  };
  add(preferred_parent_);
  for (const std::string& a : replica_.upstream()) add(a);  // the grandparent first
  for (const std::string& a : opts_.fallback_parents) add(a);
  add(opts_.parent);
  add(parent_address());  // the lost one, last: it may come back
  return out;
}

asio::awaitable<void> TreeNode::Reconnect() {
  reconnecting_ = true;
  const std::vector<std::string> candidates = Candidates();
  const std::string lost = parent_address();
  // With several places to go, a dead one costs half a second, not two:
  // a standby root that takes over is found soon after.
  const auto per_try = std::chrono::milliseconds(candidates.size() > 1 ? 500 : 2000);
  for (size_t i = 0; !stopped_; ++i) {
    const std::string& address = candidates[i % candidates.size()];
    std::string why;
    std::optional<tcp::socket> socket = co_await DialParent(address, std::chrono::steady_clock::now() + per_try, &why);
    if (stopped_) break;
    if (!socket) {
      LogWarning("volume " + replica_.config().volume_name + ": " + why);
      continue;
    }
    AttachParent(std::move(*socket), address);
    replica_.Rejoin(Now());
    Drain();
    // Wait for the CONNECT's answer (its call has the io_timeout deadline).
    while (!stopped_ && replica_.connecting()) {
      asio::steady_timer t(io_, std::chrono::milliseconds(50));
      co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ignored_ec_));
    }
    if (replica_.connected()) {
      const bool moved = address != lost;
      if (moved) ++reparents_;
      LogInfo("volume " + replica_.config().volume_name + ": joined " + address + (moved ? " (reparented)" : ""));
      break;
    }
    LogWarning("volume " + replica_.config().volume_name + ": joining " + address + " failed: " +
               replica_.connect_error());
    if (parent_) parent_->Close(Status::IOError("join failed"));
    asio::steady_timer pause(io_, std::chrono::milliseconds(200));
    co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ignored_ec_));
  }
  preferred_parent_.clear();
  reconnecting_ = false;
}

Status TreeNode::Reparent(const std::string& address) {
  if (opts_.parent.empty()) return Status::InvalidArgument("the root has no parent to change");
  std::string host, port;
  if (!SplitHostPort(address, &host, &port)) return Status::InvalidArgument("bad parent address '" + address + "' (want HOST:PORT)");
  // Nothing may exist only here when the old link goes.
  if (Status st = Sync(); !st.ok()) return Status::IOError("reparent: the sync barrier failed, staying: " + st.message());
  asio::post(io_, [this, address] {
    preferred_parent_ = address;
    if (parent_ && !parent_->closed()) parent_->Close(Status::IOError("reparenting to " + address + " on request"));
  });
  const auto give_up = std::chrono::steady_clock::now() + opts_.io_timeout;
  while (std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (parent_address() == address && replica_connected_) return Status::Ok();
  }
  return Status::TimedOut("could not join " + address + " within " + std::to_string(opts_.io_timeout.count()) +
                          " ms; now below " + parent_address());
}

asio::awaitable<void> TreeNode::TickLoop() {
  asio::steady_timer t(io_);
  while (!stopped_) {
    t.expires_after(std::chrono::milliseconds(50));
    boost::system::error_code ec;
    co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (stopped_) break;
    replica_.Tick(Now());
    if (role_) ApplyRole(Now());
    Drain();
  }
}

void TreeNode::ApplyRole(Time now) {
  if (role_->Tick(now)) replica_.TakeOver(now);
  const Time until = role_->ServingUntil();
  replica_.SetAuthority(until, now);
  // Children of a root that serves nothing would wait in vain (their
  // HEARTBEATs are refused, not lost): let them go, to find the root that
  // serves. They come back here if this one serves again first.
  if (now >= until && !children_.empty())
    for (auto& [link, conn] : children_)
      if (!peer_links_.count(link))
        asio::post(io_, [conn = conn] { conn->Close(Status::IOError("this root does not serve the volume now")); });
  std::lock_guard lock(counters_mu_);
  role_copy_ = role_->Describe(now);
  root_lease_left_ = until == Time::max() ? -1
                     : until <= now      ? 0
                                         : std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count();
}

void TreeNode::AnswerPeer(LinkId link, const std::shared_ptr<Connection>& conn, const Message& m) {
  if (peer_links_.insert(link).second) {
    std::lock_guard lock(counters_mu_);
    counters_.children = children_.size() - peer_links_.size();
    child_addresses_.erase(link);
  }
  if (!role_ || !m.volume_name || *m.volume_name != replica_.config().volume_name) {
    Message r;
    r.opcode = Opcode::kErrReply;
    r.xid = m.xid;
    r.status = role_ ? WireStatus::kNoSuchVolume : WireStatus::kNotAuthorized;  // not a root with a peer
    conn->Send(r);
    return;
  }
  const Time now = Now();
  const RootRole::Answer a = role_->OnAsk(now);
  Message r;
  r.opcode = Opcode::kOkReply;
  r.xid = m.xid;
  r.volume_name = replica_.config().volume_name;
  r.connect_flags = a.state == RootRole::PeerState::kActive    ? connect_flags::kIsRoot
                    : a.state == RootRole::PeerState::kStandby ? connect_flags::kStandby
                                                               : 0u;
  if (a.lease_ms) r.hb_ttl_ms = a.lease_ms;
  r.protocol_version = kCurrentProtocolVersion;
  conn->Send(r);
}

asio::awaitable<void> TreeNode::PeerLoop() {
  const ReplicaConfig& c = replica_.config();
  const auto period = std::chrono::milliseconds(replica_.heartbeat_ms());
  std::string last_problem;  // logged when it changes, not every round
  asio::steady_timer pause(io_);
  while (!stopped_) {
    if (role_->Asks()) {
      std::string problem;
      if (!peer_conn_ || peer_conn_->closed()) {
        std::optional<tcp::socket> socket = co_await DialParent(opts_.peer, Now() + period, &problem, "root peer");
        if (stopped_) break;
        if (socket)
          peer_conn_ = Connection::Start(std::move(*socket), [this](const std::shared_ptr<Connection>& conn, Message m) {
            if (m.opcode != Opcode::kDisconnect) return;  // the peer sends nothing else this way
            role_->OnPeerLeft();  // the standby is unmounting
            ApplyRole(Now());
            Message r;
            r.opcode = Opcode::kOkReply;
            r.xid = m.xid;
            conn->Send(r);
          });
      }
      if (peer_conn_ && !peer_conn_->closed()) {
        Message ask;
        ask.opcode = Opcode::kConnect;
        ask.volume_name = c.volume_name;
        ask.connect_flags = connect_flags::kIsRoot;
        ask.protocol_version = kCurrentProtocolVersion;
        ask.originator = c.self;
        ask.hops_left = 1;
        const Time sent = Now();
        CallResult r = co_await peer_conn_->Call(std::move(ask), period);
        if (stopped_) break;
        if (!r.status.ok()) {
          problem = "root peer " + opts_.peer + " did not answer: " + r.status.message();
          peer_conn_->Close(r.status);
        } else if (r.reply.opcode != Opcode::kOkReply) {
          problem = "root peer " + opts_.peer + " refused: " +
                    WireStatusName(r.reply.status.value_or(WireStatus::kNotAuthorized));
        } else {
          const uint32_t f = r.reply.connect_flags.value_or(0);
          RootRole::Answer a;
          a.state = (f & connect_flags::kIsRoot)    ? RootRole::PeerState::kActive
                    : (f & connect_flags::kStandby) ? RootRole::PeerState::kStandby
                                                    : RootRole::PeerState::kWaiting;
          a.lease_ms = r.reply.hb_ttl_ms.value_or(0);
          if (a.state == RootRole::PeerState::kStandby && a.lease_ms == 0) a.state = RootRole::PeerState::kWaiting;
          if (a.state == RootRole::PeerState::kWaiting) problem = "root peer " + opts_.peer + " is neither active nor a standby";
          role_->OnAnswer(sent, a);
          ApplyRole(Now());
          Drain();
        }
      }
      if (!problem.empty() && problem != last_problem) LogWarning("volume " + c.volume_name + ": " + problem);
      last_problem = problem;
    }
    pause.expires_after(role_->state() == RootRole::State::kWaiting ? std::chrono::milliseconds(200) : period);
    boost::system::error_code ec;
    co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

std::string TreeNode::root_role() const {
  std::lock_guard lock(counters_mu_);
  return role_copy_;
}

int64_t TreeNode::root_lease_ms_left() const {
  std::lock_guard lock(counters_mu_);
  return root_lease_left_;
}

void TreeNode::Drain() {
  lease_ = static_cast<uint8_t>(replica_.lease());
  {
    std::lock_guard lock(counters_mu_);
    lease_info_ = replica_.lease_info(Now());
  }
  replica_connected_ = replica_.connected();
  {
    std::lock_guard lock(counters_mu_);
    upstream_copy_ = replica_.upstream();
  }
  if (replica_.TakeParentFailed() && parent_ && !parent_->closed())
    asio::post(io_, [conn = parent_] { conn->Close(Status::IOError("the parent stopped answering HEARTBEATs")); });
  for (LinkId c : replica_.TakeFailedChildren()) {
    auto it = children_.find(c);
    if (it == children_.end()) continue;
    // Closed on a later turn: closing calls back into us.
    asio::post(io_, [conn = it->second] { conn->Close(Status::IOError("declared failed by the parent")); });
  }
  for (Outgoing& o : replica_.TakeOutbox()) Route(std::move(o));
  for (LocalDone& d : replica_.TakeLocalDone()) {
    auto it = waiters_.find(d.op);
    if (it == waiters_.end()) continue;  // its caller gave up waiting
    auto [w, index] = it->second;
    waiters_.erase(it);
    std::lock_guard lock(w->mu);
    if (!d.status.ok() && w->status.ok()) w->status = d.status;
    w->data[index] = std::move(d.data);
    if (--w->remaining == 0) {
      w->done = true;
      w->cv.notify_all();
    }
  }
  if (join_waiter_) {
    // Joining ends when the Replica is connected or has given up.
    std::shared_ptr<Waiter> w = join_waiter_;
    if (replica_.connected() || !replica_.connecting()) {
      join_waiter_.reset();
      std::lock_guard lock(w->mu);
      w->done = true;
      const std::string& why = replica_.connect_error();
      w->status = replica_.connected() ? Status::Ok()
                  : why.find("NO_SUCH_VOLUME") != std::string::npos
                      ? Status::NotFound("parent " + opts_.parent + " does not serve volume " + replica_.config().volume_name)
                      : Status::IOError("cannot join volume " + replica_.config().volume_name + " at " + opts_.parent +
                                        ": " + why);
      w->cv.notify_all();
    }
  }
}

void TreeNode::Route(Outgoing o) {
  std::shared_ptr<Connection> conn;
  if (o.to_parent) {
    conn = parent_;
  } else if (auto it = children_.find(o.child); it != children_.end()) {
    conn = it->second;
  }
  if (conn && o.to_parent) traffic_.ToParent(o.msg);
  if (conn && !o.to_parent) traffic_.ToChild(o.msg);
  if (o.kind == Outgoing::Kind::kSend) {
    if (conn) conn->Send(o.msg);
    return;
  }
  {
    std::lock_guard lock(counters_mu_);
    ++(o.to_parent ? counters_.calls_to_parent : counters_.calls_to_children);
  }
  const uint64_t call_id = o.call_id;
  if (!conn || conn->closed()) {
    // Answer on a later turn: the Replica is in the middle of draining.
    asio::post(io_, [this, call_id, to_parent = o.to_parent] {
      replica_.OnReply(call_id, Status::IOError(to_parent ? "no connection to the parent" : "child is gone"), {}, Now());
      Drain();
    });
    return;
  }
  // The reply is handled as it is read, in order with the requests on the
  // same connection (see net/connection.h).
  const auto timeout = o.timeout.count() > 0 ? std::min(o.timeout, opts_.io_timeout) : opts_.io_timeout;
  conn->CallAsync(std::move(o.msg), timeout, [this, call_id, to_parent = o.to_parent](CallResult r) {
    if (!r.status.ok()) traffic_.CallFailed();
    else if (to_parent) traffic_.FromParent(r.reply);
    else traffic_.FromChild(r.reply);
    replica_.OnReply(call_id, r.status, r.reply, Now());
    Drain();
  });
}

Status TreeNode::RunLocal(std::vector<Starter> starts, std::vector<std::vector<uint8_t>>* outs) {
  if (stopped_) return Status::IOError("node stopped");
  if (starts.empty()) return Status::Ok();
  auto w = std::make_shared<Waiter>();
  w->remaining = starts.size();
  w->data.resize(starts.size());
  asio::post(io_, [this, w, starts = std::move(starts)] {
    // Register every operation before draining: some complete on the spot.
    for (size_t i = 0; i < starts.size(); ++i) waiters_[starts[i](replica_, Now())] = {w, i};
    Drain();
  });
  {
    std::lock_guard lock(counters_mu_);
    counters_.local_ops += w->data.size();
  }
  std::unique_lock lock(w->mu);
  if (!w->cv.wait_for(lock, opts_.io_timeout, [&] { return w->done; })) {
    std::lock_guard c(counters_mu_);
    ++counters_.local_timeouts;
    return Status::TimedOut("no answer within " + std::to_string(opts_.io_timeout.count()) + " ms");
  }
  if (outs) *outs = std::move(w->data);
  return w->status;
}

Status TreeNode::Read(uint64_t block, std::vector<uint8_t>* out) {
  std::vector<std::vector<uint8_t>> outs;
  Status st = RunLocal({[block](Replica& r, Time now) { return r.ReadLocal(block, now); }}, &outs);
  if (st.ok()) *out = std::move(outs[0]);
  return st;
}

Status TreeNode::Write(uint64_t block, size_t offset, std::span<const uint8_t> data) {
  std::vector<uint8_t> bytes(data.begin(), data.end());
  return RunLocal({[block, offset, bytes = std::move(bytes)](Replica& r, Time now) mutable {
                    return r.WriteLocal(block, offset, std::move(bytes), now);
                  }},
                  nullptr);
}

Status TreeNode::Flush(uint64_t block) {
  return RunLocal({[block](Replica& r, Time now) { return r.FlushLocal(block, Perm::kRead, now); }}, nullptr);
}

Status TreeNode::Sync() {
  return RunLocal({[](Replica& r, Time now) { return r.SyncLocal(now); }}, nullptr);
}

Status TreeNode::AcquireLease(bool shared) {
  return RunLocal({[shared](Replica& r, Time now) { return r.AcquireLeaseLocal(shared, now); }}, nullptr);
}

Status TreeNode::ReleaseLease(bool shared) {
  return RunLocal({[shared](Replica& r, Time now) { return r.ReleaseLeaseLocal(shared, now); }}, nullptr);
}

Status TreeNode::DropAll() {
  return RunLocal({[](Replica& r, Time now) { return r.DropAllLocal(now); }}, nullptr);
}

Status TreeNode::RunBatch(std::vector<BlockOp>* ops, bool forward_writes) {
  std::vector<Starter> starts;
  // By value: the caller may give up waiting (and free *ops) before the
  // I/O thread runs these.
  for (BlockOp& op : *ops) {
    if (op.write)
      starts.push_back([b = op.block, off = op.offset, bytes = std::move(op.data)](Replica& r, Time now) mutable {
        return r.WriteLocal(b, off, std::move(bytes), now);
      });
    else
      starts.push_back([b = op.block](Replica& r, Time now) { return r.ReadLocal(b, now); });
  }
  // Queued behind the writes to the same blocks (each block's jobs run in
  // order), so each FORWARD carries what the batch wrote.
  const size_t n = starts.size();
  if (forward_writes)
    for (const BlockOp& op : *ops)
      if (op.write) starts.push_back([b = op.block](Replica& r, Time now) { return r.ForwardLocal(b, now); });
  std::vector<std::vector<uint8_t>> outs;
  Status st = RunLocal(std::move(starts), &outs);
  if (st.ok())
    for (size_t i = 0; i < ops->size(); ++i)
      if (!(*ops)[i].write && i < n) (*ops)[i].data = std::move(outs[i]);
  return st;
}

uint64_t TreeNode::volume_size() const { return replica_.config().volume_size; }
uint32_t TreeNode::block_size() const { return replica_.config().block_size; }

std::vector<std::string> TreeNode::child_addresses() const {
  std::lock_guard lock(counters_mu_);
  std::vector<std::string> out;
  for (const auto& [link, addr] : child_addresses_) out.push_back(addr);
  return out;
}

std::string TreeNode::parent_address() const {
  std::lock_guard lock(counters_mu_);
  return current_parent_;
}

std::vector<std::string> TreeNode::upstream() const {
  std::lock_guard lock(counters_mu_);
  return upstream_copy_;
}

LeaseInfo TreeNode::lease_info() const {
  std::lock_guard lock(counters_mu_);
  return lease_info_;
}

TreeNodeCounters TreeNode::counters() const {
  std::lock_guard lock(counters_mu_);
  return counters_;
}

}  // namespace vshare::net
