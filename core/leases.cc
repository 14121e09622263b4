// Leases, both ways: this node's lease from its parent (heartbeats), its
// children's leases from it, and what happens when a child fails. The
// safety argument is in doc/failover.md.
#include "core/conversions.h"
#include "core/log.h"
#include "core/replica.h"

namespace vshare {

namespace {
int64_t Ns(Time t) {
  if (t == Time::max()) return INT64_MAX;
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}
}  // namespace

uint32_t Replica::HbTtlFor(Time now) const {
  if (cfg_.is_root) {
    if (authority_until_ == Time::max()) return hb_ttl_ms_;
    return std::min(hb_ttl_ms_, MsUntil(now, authority_until_));  // a child's lease ends before ours
  }
  return LeaseValid(now) ? std::min(hb_ttl_ms_, MsUntil(now, parent_lease_.until())) : 0;
}

void Replica::PublishWindow() {
  if (!table_) return;
  if (cfg_.is_root) {
    table_->SetWindow(Ns(claims_until_), Ns(authority_until_), Ns(authority_until_));
  } else {
    // Writes stop with the link: bytes written while it is down could be
    // lost with it (the claims after a rejoin may come too late).
    // --kernel-cache: closed early while the lease runs out (kernel_pages.cc).
    const int64_t until = kernel_fenced_ ? 0 : Ns(parent_lease_.until());
    table_->SetWindow(0, until, connected_ ? until : 0);
  }
}

void Replica::SendHeartbeat(Time now) {
  if (cfg_.is_root || !connected_ || parent_lease_.heartbeat_in_flight()) return;
  const auto period = std::chrono::milliseconds(heartbeat_ms());
  parent_lease_.HeartbeatSent(now, period);
  Message m;
  m.opcode = Opcode::kHeartbeat;
  m.originator = cfg_.self;
  m.hops_left = 1;
  // One period to answer: three missed ones and the parent counts as
  // failed, before our lease (four periods) has lapsed.
  CallParent(std::move(m), Call{CallKind::kHeartbeat}, period);
}

void Replica::HeartbeatAnswered(const Status& st, const Message& reply, Time now) {
  const bool renewed = st.ok() && reply.opcode == Opcode::kOkReply && reply.hb_ttl_ms;
  if (parent_lease_.HeartbeatAnswered(renewed, !st.ok(), now)) {
    LogWarning("volume " + cfg_.volume_name + ": the parent did not answer 3 HEARTBEATs in a row, and sent nothing else meanwhile (" + st.ToString() +
               "); looking for another");
    effects_.drop_parent = true;
  }
  if (renewed) {
    CheckKernelFence(now);
    PumpAll(now);  // what waited for the renewal
  }
}

void Replica::OnChildGone(LinkId child, Time now) {
  now_ = now;
  if (child_leases_.IsFailed(child) || child_leases_.TakeDeparted(child)) return AfterEvent();
  ChildFailed(child, now, "its link closed");
  AfterEvent();
}

void Replica::ChildFailed(LinkId child, Time now, const std::string& why) {
  if (child_leases_.IsFailed(child)) return;
  // Its grants stand until its lease (plus the margin) is over, and then
  // one more lease: the grace period in which its children, having found
  // it failed, join elsewhere and claim back what they wrote (RECOVER).
  // (Counted from the end of its lease: its children find it failed by
  // then at the latest, since it stopped answering before.)
  Time until = now + std::chrono::milliseconds(hb_ttl_ms_);
  if (const Time* end = child_leases_.LeaseEnd(child))
    until = std::max(now, *end + std::chrono::milliseconds(margin_ms() + hb_ttl_ms_));
  child_leases_.Forget(child);
  children_.ForgetFlags(child);
  effects_.close_children.push_back(child);
  const uint64_t held = children_.GrantCount(child);
  if (held == 0 && writer_lock_.HeldBy(child) == Perm::kNone) {
    LogInfo("volume " + cfg_.volume_name + ": child link " + std::to_string(child) + " failed (" + why +
            "); nothing of it to wait for");
    child_leases_.CountFailure();
    ReleaseChild(child);
    return;
  }
  // Its copies (and its children's) stay usable until its lease lapses: no
  // one may get a conflicting grant before then.
  child_leases_.Fail(child, until);
  LogWarning("volume " + cfg_.volume_name + ": child link " + std::to_string(child) + " failed (" + why + "); its " +
             std::to_string(held) + " blocks are held for " + std::to_string(MsUntil(now, until)) +
             " ms, until its lease has surely lapsed");
}

// Its grants are void from now on (no pass over the table: its bit is
// retired), and its writer lease goes back.
void Replica::ReleaseChild(LinkId child) {
  children_.Retire(child);
  writer_lock_.ChildGone(child);
}

void Replica::Tick(Time now) {
  now_ = now;
  if (!cfg_.is_root && connected_ && parent_lease_.HeartbeatDue(now)) SendHeartbeat(now);
  for (LinkId c : child_leases_.Lapsed(now, std::chrono::milliseconds(margin_ms())))
    ChildFailed(c, now, "its lease lapsed: no HEARTBEAT");
  for (LinkId c : child_leases_.Over(now)) {
    ReleaseChild(c);
    LogInfo("volume " + cfg_.volume_name + ": the lease of failed child link " + std::to_string(c) +
            " is over; its blocks are released");
  }
  // Retired children's bits leave the table a little at a time.
  if (table_) children_.Sweep(*table_, 1024);
  CheckKernelFence(now);
  CheckBlockedDrops(now);
  PumpAll(now);
  writer_lock_.Pump();
  sync_.Tick();
  AfterEvent();
}

void Replica::SetAuthority(Time until, Time now) {
  now_ = now;
  const bool was = LeaseValid(now);
  authority_until_ = until;
  if (!was && LeaseValid(now)) {
    PumpAll(now);
    writer_lock_.Pump();
  }
  AfterEvent();
}

}  // namespace vshare
