// The node's life, its children, and carrying out the engine's effects.
#include "net/tree_node.h"

#include "core/daemon.h"
#include "core/log.h"
#include "core/store_io.h"

#include <cstring>

namespace vshare::net {

namespace {

ReplicaConfig WithRole(ReplicaConfig cfg, const TreeNodeOptions& opts) {
  cfg.is_root = opts.parent.empty();
  return cfg;
}

// "host:port" into its parts; false when malformed. "[::1]:7000" works too.
bool SplitHostPort(const std::string& s, std::string* host, std::string* port) {
  size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == s.size()) return false;
  *host = s.substr(0, colon);
  *port = s.substr(colon + 1);
  if (host->front() == '[' && host->back() == ']') *host = host->substr(1, host->size() - 2);
  return true;
}

}  // namespace

TreeNode::TreeNode(TreeNodeOptions opts, ReplicaConfig cfg, std::unique_ptr<BlockStore> store)
    : opts_(std::move(opts)),
      cfg_name_(cfg.volume_name),
      store_(std::move(store)),
      replica_(WithRole(std::move(cfg), opts_)),
      work_(io_.get_executor()),
      acceptor_(io_) {
  table_ = replica_.table();
  // A local read's bytes go from the slot straight into the caller's buffer.
  replica_.SetReadSink([this](uint64_t op, std::span<const uint8_t> block) {
    // Not registered yet (granted at once, while it was being started), or
    // its caller gave up: the completion carries the bytes instead.
    auto it = waiting_.find(op);
    if (it == waiting_.end()) return false;
    auto& [b, i] = it->second;
    std::lock_guard lock(b->mu);
    if (b->cancelled || !b->outs[i]) return true;
    const auto [off, len] = b->ranges[i];
    std::memcpy(b->outs[i], block.data() + off, len);
    return true;
  });
  if (replica_.config().is_root && !opts_.peer.empty()) {
    role_.emplace(opts_.standby, replica_.config().hb_ttl_ms, replica_.margin_ms());
    replica_.SetAuthority(role_->ServingUntil(), Now());  // nothing until the role says so
  }
  Publish();
}

TreeNode::~TreeNode() { Stop(); }

void TreeNode::Spawn(asio::awaitable<void> a, const char* what) {
  asio::co_spawn(io_, std::move(a), [this, what](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      LogError(std::string("volume ") + cfg_name_ + ": internal error in the " + what + " loop: " + x.what() +
               (stopped_ ? "" : "; starting it again"));
    }
    if (stopped_) return;
    // The loops the node lives by start again rather than die quietly.
    const std::string w = what;
    if (w == "tick") Spawn(TickLoop(), "tick");
    else if (w == "peer") Spawn(PeerLoop(), "peer");
    else if (w == "accept") Spawn(AcceptLoop(), "accept");
    else if (w == "reconnect") {
      reconnecting_ = false;
      if (!replica_.connected()) {
        reconnecting_ = true;
        Spawn(Reconnect(), "reconnect");
      }
    }
  });
}

Status TreeNode::Start() {
  if (!opts_.listen.empty()) {
    std::string host, port;
    if (!SplitHostPort(opts_.listen, &host, &port))
      return Status::InvalidArgument("bad listen address '" + opts_.listen + "' (want HOST:PORT)");
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
  if (BlockTable* t = table_.load()) t->Prefault();  // made before a fork, maybe
  {
    TerminationSignalsBlocked blocked;  // signals are for the main thread
    if (store_) {
      store_pool_ = std::make_unique<asio::thread_pool>(std::max(1u, opts_.store_threads));
      store_order_.emplace(asio::make_strand(store_pool_->get_executor()));
    }
    thread_ = std::thread([this] {
      // The wall around every handler: one that throws is logged, and the
      // thread goes on serving.
      for (;;) {
        try {
          io_.run();
          return;
        } catch (const std::exception& e) {
          LogError("volume " + cfg_name_ + ": internal error in the I/O thread: " + std::string(e.what()));
        }
      }
    });
  }
  // Children are accepted only once this node serves the volume itself:
  // until then they wait in the listen backlog.
  Spawn(TickLoop(), "tick");
  if (role_) Spawn(PeerLoop(), "peer");
  if (opts_.parent.empty()) {
    if (acceptor_.is_open()) Spawn(AcceptLoop(), "accept");
    return Status::Ok();
  }
  asio::post(io_, [this] { Spawn(ConnectParent(), "connect"); });
  std::unique_lock lock(join_mu_);
  if (!join_cv_.wait_for(lock, opts_.io_timeout + std::chrono::milliseconds(500), [&] { return join_done_; }))
    return Status::TimedOut("no answer from parent " + opts_.parent + " within " +
                            std::to_string(opts_.io_timeout.count()) + " ms");
  if (!join_status_.ok()) return join_status_;
  table_ = replica_.table();  // made by the join, on the I/O thread, before join_done_
  if (BlockTable* t = table_.load()) t->Prefault();  // here, not on the I/O thread
  if (acceptor_.is_open()) asio::post(io_, [this] { Spawn(AcceptLoop(), "accept"); });
  return Status::Ok();
}

void TreeNode::Stop() {
  if (stopped_) return;
  if (thread_.joinable()) {
    // A standby the active root leans on says it is going, so that the
    // active root serves on instead of stopping when its root lease lapses.
    if (role_) TellPeerLeaving();
    // Tell the parent we are going, so it need not wait out our lease.
    if (!opts_.parent.empty()) RunLocal({[](Replica& r, Time now) { return r.LeaveLocal(now); }});
  }
  stopped_ = true;
  if (thread_.joinable()) {
    asio::post(io_, [this] {
      boost::system::error_code ec;
      acceptor_.close(ec);
      if (parent_) parent_->Close(Status::IOError("node stopping"));
      for (auto& [link, c] : std::map(children_)) c->Close(Status::IOError("node stopping"));
      for (auto& [op, entry] : waiting_) {
        std::shared_ptr<Batch> b = entry.first;
        std::lock_guard lock(b->mu);
        if (b->status.ok()) b->status = Status::IOError("node stopped");
        b->remaining = 0;
        b->cv.notify_all();
      }
      waiting_.clear();
      {
        std::lock_guard lock(join_mu_);
        if (!join_done_) {
          join_done_ = true;
          join_status_ = Status::IOError("node stopped");
          join_cv_.notify_all();
        }
      }
      // Whatever is still waiting (calls, timers) is abandoned, not run.
      io_.stop();
    });
    work_.reset();
    thread_.join();
  }
  if (store_pool_) store_pool_->join();  // no store I/O outlives the node
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
          if (m.opcode == Opcode::kIoRequest || m.opcode == Opcode::kForward) ++requests_served_;
          replica_.OnChildMessage(link, m, Now());
          Drain();
        },
        [this, link](const std::shared_ptr<Connection>&, const Status& why) {
          if (!peer_links_.erase(link)) LogInfo("child link " + std::to_string(link) + " closed: " + why.message());
          children_.erase(link);
          child_addresses_.erase(link);
          replica_.OnChildGone(link, Now());
          Drain();
          Publish();
        },
        child_budget_);
    children_[link] = conn;
    child_addresses_[link] = conn->peer();
    Publish();
  }
}

asio::awaitable<void> TreeNode::TickLoop() {
  asio::steady_timer t(io_);
  while (!stopped_) {
    t.expires_after(std::chrono::milliseconds(50));
    boost::system::error_code ec;
    co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (stopped_) break;
    if (opts_.on_tick) opts_.on_tick();
    replica_.Tick(Now());
    if (role_) ApplyRole(Now());
    Drain();
    Publish();
  }
}

void TreeNode::Publish() {
  auto s = std::make_shared<TreeStatus>();
  const Time now = Now();
  s->replica = replica_.stats(now);
  s->children = children_.size() - peer_links_.size();
  for (const auto& [link, addr] : child_addresses_)
    if (!peer_links_.count(link)) s->child_addresses.push_back(addr);
  s->parent = current_parent_;
  s->upstream = replica_.upstream();
  s->reparents = reparents_;
  s->requests_served = requests_served_;
  s->calls_to_parent = calls_to_parent_;
  s->calls_to_children = calls_to_children_;
  s->child_send_peak_bytes = child_budget_->peak();
  s->child_send_pauses = child_budget_->pauses();
  s->local_ops = local_ops_;
  s->local_timeouts = local_timeouts_;
  s->writer_lease = replica_.lease();
  s->root_role = role_text_;
  s->root_lease_ms_left = root_lease_left_;
  s->connected = replica_.connected();
  std::lock_guard lock(status_mu_);
  status_ = std::move(s);
}

TreeStatus TreeNode::status() const {
  TreeStatus s;
  {
    std::lock_guard lock(status_mu_);
    if (status_) s = *status_;
  }
  s.listen_port = port_;
  s.root_peer = role_ ? opts_.peer : "";
  s.traffic = traffic_.Snapshot();
  return s;
}

void TreeNode::AddStats(VolumeStats* s) const {
  s->store_reads += store_reads_.load(std::memory_order_relaxed);
  s->store_writes += store_writes_.load(std::memory_order_relaxed);
}

void TreeNode::Drain() {
  Effects e = replica_.TakeEffects();
  if (e.drop_parent && parent_ && !parent_->closed())
    asio::post(io_, [conn = parent_] { conn->Close(Status::IOError("the parent stopped answering HEARTBEATs")); });
  for (LinkId c : e.close_children) {
    auto it = children_.find(c);
    if (it == children_.end()) continue;
    // Closed on a later turn: closing calls back into us.
    asio::post(io_, [conn = it->second] { conn->Close(Status::IOError("declared failed by the parent")); });
  }
  for (Outgoing& o : e.messages) Route(std::move(o));
  for (StoreOp& op : e.store) RunStore(std::move(op));
  for (LocalDone& d : e.done) Complete(d);
  for (const PageDrop& d : e.page_drops) DropPages(d);
  FinishJoin();
}

void TreeNode::DropPages(const PageDrop& d) {
  const uint64_t token = d.token;
  auto report = [this, token](bool stuck) {
    if (token == 0) return;
    asio::post(io_, [this, token, stuck] {
      if (stuck) replica_.PagesBlocked(token, Now());
      else replica_.PagesDropped(token, Now());
      Drain();
      Publish();
    });
  };
  if (drop_pages_) return drop_pages_(d, std::move(report));
  if (token && d.table) d.table->Fence(d.first);  // no kernel cache to drop
  report(false);
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
    if (conn) conn->Send(o.msg, o.urgent);
    return;
  }
  ++(o.to_parent ? calls_to_parent_ : calls_to_children_);
  const uint64_t call_id = o.call_id;
  if (!conn || conn->closed()) {
    // Answer on a later turn: the engine is in the middle of draining.
    asio::post(io_, [this, call_id, to_parent = o.to_parent] {
      replica_.OnReply(call_id, Status::IOError(to_parent ? "no connection to the parent" : "child is gone"), {}, Now());
      Drain();
    });
    return;
  }
  // Each part of the reply is handled as it is read, in order with the
  // requests on the same connection (see net/connection.h).
  const auto timeout = o.timeout.count() > 0 ? std::min(o.timeout, opts_.io_timeout) : opts_.io_timeout;
  conn->CallAsync(std::move(o.msg), timeout, [this, call_id, to_parent = o.to_parent](CallResult r) {
    if (!r.status.ok()) traffic_.CallFailed();
    else if (to_parent) traffic_.FromParent(r.reply);
    else traffic_.FromChild(r.reply);
    replica_.OnReply(call_id, r.status, r.reply, Now());
    Drain();
  }, o.urgent);
}

void TreeNode::RunStore(StoreOp op) {
  if (!store_ || !store_pool_) {
    asio::post(io_, [this, id = op.id] {
      replica_.OnStoreDone(id, Status::IOError("no store here"), Now());
      Drain();
    });
    return;
  }
  if (op.kind == StoreOp::Kind::kRead) store_reads_ += op.count;
  if (op.kind == StoreOp::Kind::kWrite) store_writes_ += op.count;
  const bool read = op.kind == StoreOp::Kind::kRead;
  auto run = [this, op = std::move(op)] {
    const Status st = RunStoreOp(op, table_.load(), store_.get());
    asio::post(io_, [this, id = op.id, st] {
      replica_.OnStoreDone(id, st, Now());
      Drain();
    });
  };
  if (read) asio::post(*store_pool_, std::move(run));
  else asio::post(*store_order_, std::move(run));
}

}  // namespace vshare::net
