// Two roots of one volume (--peer): the asks for a root lease, the answers
// as a standby, and the role's effect on the engine (core/root_role.h,
// doc/failover.md, section 4).
#include "core/log.h"
#include "net/tree_node.h"

namespace vshare::net {

void TreeNode::ApplyRole(Time now) {
  if (role_->Tick(now)) replica_.TakeOver(now);
  const Time until = role_->ServingUntil();
  replica_.SetAuthority(until, now);
  // Children of a root that serves nothing would wait in vain (their
  // HEARTBEATs are refused, not lost): let them go, to find the root that
  // serves. They come back here if this one serves again first. A link
  // that has not joined is left alone: its CONNECT is refused with
  // IN_RECOVERY, and that answer must reach it before the link goes.
  if (now >= until && !children_.empty())
    for (auto& [link, conn] : children_)
      if (!peer_links_.count(link) && replica_.IsJoined(link))
        asio::post(io_, [conn = conn] { conn->CloseWhenSent(Status::IOError("this root does not serve the volume now")); });
  role_text_ = role_->Describe(now);
  root_lease_left_ = until == Time::max() ? -1
                     : until <= now      ? 0
                                         : std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count();
}

void TreeNode::AnswerPeer(LinkId link, const std::shared_ptr<Connection>& conn, const Message& m) {
  peer_links_.insert(link);
  if (!role_ || !m.volume_name || *m.volume_name != cfg_name_) {
    Message r;
    r.opcode = Opcode::kErrReply;
    r.xid = m.xid;
    r.status = role_ ? WireStatus::kNoSuchVolume : WireStatus::kNotAuthorized;  // not a root with a peer
    conn->Send(r);
    return;
  }
  const RootRole::Answer a = role_->OnAsk(Now());
  Message r;
  r.opcode = Opcode::kOkReply;
  r.xid = m.xid;
  r.volume_name = cfg_name_;
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
        Status::Code code;
        std::optional<tcp::socket> socket = co_await Dial(opts_.peer, Now() + period, &problem, &code, "root peer");
        if (stopped_) break;
        if (socket) {
          problem.clear();
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

void TreeNode::TellPeerLeaving() {
  struct Countdown {
    std::mutex mu;
    std::condition_variable cv;
    int left = -1;  // -1: not counted yet
  };
  auto told = std::make_shared<Countdown>();
  asio::post(io_, [this, told] {
    std::vector<std::shared_ptr<Connection>> peers;
    if (role_->Leave())
      for (LinkId l : peer_links_)
        if (auto it = children_.find(l); it != children_.end()) peers.push_back(it->second);
    {
      std::lock_guard lock(told->mu);
      told->left = static_cast<int>(peers.size());
    }
    told->cv.notify_all();
    for (auto& p : peers) {
      Message bye;
      bye.opcode = Opcode::kDisconnect;
      bye.connect_flags = connect_flags::kStandby;
      p->CallAsync(bye, std::chrono::milliseconds(500), [told](CallResult r) {
        if (!r.final) return;
        std::lock_guard l(told->mu);
        if (--told->left == 0) told->cv.notify_all();
      });
    }
  });
  std::unique_lock lock(told->mu);
  told->cv.wait_for(lock, std::chrono::seconds(1), [&] { return told->left == 0; });
}

}  // namespace vshare::net
