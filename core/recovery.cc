// Recovery: losing the parent, joining again (the same parent, the
// grandparent or another), claiming back with RECOVER what may exist only
// here, serving children's claims, and a standby root's takeover. The
// safety argument is in doc/failover.md.
#include <algorithm>
#include <cstring>
#include <random>
#include <unordered_set>

#include "core/conversions.h"
#include "core/log.h"
#include "core/replica.h"

namespace vshare {

void Replica::OnParentLost(Time now) {
  now_ = now;
  if (cfg_.is_root || !connected_) return AfterEvent();
  connected_ = false;
  connecting_ = false;
  rejoining_ = true;
  parent_lease_.LinkLost();
  LogWarning("volume " + cfg_.volume_name + ": lost the link to the parent; cached blocks stay usable for " +
             std::to_string(MsUntil(now, parent_lease_.until())) + " ms more (the lease)");
  AfterEvent();
}

void Replica::Rejoin(Time now) {
  now_ = now;
  if (cfg_.is_root || connected_) return AfterEvent();
  connecting_ = false;
  ConnectUpward(cfg_.self, cfg_.max_hops);
  AfterEvent();
}

void Replica::ResetAfterRejoin(Time now) {
  // Our children got their grants through the old link, which the parent
  // has written off: they must join again (their copies stay usable only
  // until their leases lapse, and block others until then).
  for (LinkId c : child_leases_.Live()) ChildFailed(c, now, "this node joined its parent again");
  // Blocks whose latest bytes may exist only here (dirty ones, and those
  // FORWARDed to the lost parent) are claimed back with RECOVER, ahead of
  // anything else queued for them.
  std::vector<uint64_t> claim = table_->DirtyBlocks();
  std::unordered_set<uint64_t> recalled;  // noted, but held below WRITE: see RecoverJob
  for (uint64_t b : forwarded_) {
    if (std::binary_search(claim.begin(), claim.end(), b)) continue;
    {
      BlockTable::Locked set = table_->Lock(b);
      if (const BlockTable::Slot* s = set.Find(b); s && table_->HeldOf(*s) < Perm::kWrite) recalled.insert(b);
    }
    claim.push_back(b);
  }
  std::sort(claim.begin(), claim.end());
  if (!claim.empty() && now > parent_lease_.until() + std::chrono::milliseconds(hb_ttl_ms_ + margin_ms())) {
    // Cut off for longer than the grace period: whatever held the blocks for
    // us has let them go, and someone may have written them since.
    LogWarning("volume " + cfg_.volume_name + ": joined again too late to claim back " + std::to_string(claim.size()) +
               " blocks written here; those writes are lost");
    recovery_lost_ += claim.size();
    sync_.WritesLost();
    for (uint64_t b : claim) DropCopy(b);
    claim.clear();
  }
  // Every permission held through the old link is void at once. Clean
  // copies stay, to be revalidated by version when next read.
  table_->NewGeneration();
  DropAllKernelPages();  // the kernel's pages were as good as those permissions
  claims_pending_ = claim.size();
  claims_kept_ = 0;
  claims_lost_.clear();
  recovery_lost_at_rejoin_ = recovery_lost_;
  for (uint64_t b : std::vector<uint64_t>(forwarded_.begin(), forwarded_.end())) SetForwarded(b, false);
  for (uint64_t b : claim) {
    Job j = LocalJob(0);  // nobody waits for it
    RecoverJob r;
    r.give_up = now + std::chrono::milliseconds(2 * hb_ttl_ms_ + 2 * margin_ms());
    r.recalled = recalled.count(b) > 0;
    j.kind = r;
    BlockRun& run = runs_[b];
    run.jobs.insert(run.jobs.begin(), std::move(j));
    run.waiting_parent = false;
    run.retry_at = Time{};
  }
  for (auto& [block, run] : runs_) run.recall.reset();  // the old parent's, gone with it
  writer_lock_.Rejoined(cfg_.max_hops, cfg_.self);
  LogInfo("volume " + cfg_.volume_name + ": joined the parent again; " + std::to_string(claim.size()) +
          " blocks written here are claimed back with RECOVER, other cached blocks are fetched anew");
}

// After a rejoin: hand the new parent bytes that may exist only here. It
// takes them (and lets us keep WRITE) when the node we lost held WRITE on the
// block at its end, so nobody can have written it since; otherwise they were
// superseded and are dropped, said in the log.
bool Replica::AdvanceRecover(uint64_t block, Job& j, RecoverJob& r, Time now) {
  auto give_up = [&](const std::string& why) {
    ++recovery_lost_;
    sync_.WritesLost();
    ClaimSettled(block, false, why);
    DropCopy(block);
    Finish(j, ReplyFor(0));
    return true;
  };
  if (r.stage == RecoverJob::Stage::kStart) {
    // The parent answers IN_RECOVERY while it cannot tell yet whether the
    // node we lost held the block; that is settled within a lease and the
    // grace period, or never (our claim lost out to a live writer).
    if (r.give_up != Time{} && now > r.give_up) return give_up("the claim could not be settled in time");
    Bytes bytes;
    if (!GetCopy(block, &bytes)) return give_up("no copy left");
    Message up = Upstream(j, IoOp::kRecover, block, Perm::kWrite);
    up.flags |= msg_flags::kRecoveryOp;
    up.version = StateOf(block).version;
    up.data = std::move(bytes);
    r.stage = RecoverJob::Stage::kSent;
    CallUpstream(block, j, std::move(up), now);
    return false;
  }
  const Message& up = *j.upstream_reply;
  if (up.opcode != Opcode::kOkReply) return give_up("the parent answered " + Describe(up));
  const Perm got = FromWire(up.permissions, Perm::kNone);
  if (got == Perm::kRead || (got != Perm::kWrite && r.recalled)) {
    // The parent has these very bytes already (or, for recalled bytes,
    // they went above the lost parent before newer ones): nothing to
    // keep, nothing lost.
    DropCopy(block);
    ++recovered_;
    ClaimSettled(block, true, "");
    Finish(j, ReplyFor(0));
    return true;
  }
  if (got != Perm::kWrite) return give_up("superseded");
  BlockState st = StateOf(block);
  st.held = Perm::kWrite;
  Store(block, st);
  if (up.ttl_ms) SetExpiry(block, j.sent + std::chrono::milliseconds(*up.ttl_ms));
  MarkClean(block);
  SetForwarded(block, true);  // the new parent holds them now; we still answer for them
  ++recovered_;
  ClaimSettled(block, true, "");
  Finish(j, ReplyFor(0));
  return true;
}

void Replica::ClaimSettled(uint64_t block, bool kept, const std::string& why) {
  if (kept) ++claims_kept_;
  else if (claims_lost_.size() < 8) claims_lost_.push_back(block);
  if (!kept && claims_lost_.size() <= 1) last_claim_loss_ = why;
  if (claims_pending_ == 0 || --claims_pending_ > 0) return;
  const uint64_t lost = recovery_lost_ - recovery_lost_at_rejoin_;
  if (lost == 0) {
    LogInfo("volume " + cfg_.volume_name + ": recovery done: all " + std::to_string(claims_kept_) +
            " blocks written here were taken by the new parent");
    return;
  }
  std::string list;
  for (uint64_t b : claims_lost_) list += (list.empty() ? "" : ", ") + std::to_string(b);
  LogWarning("volume " + cfg_.volume_name + ": recovery done: " + std::to_string(claims_kept_) + " blocks kept, " +
             std::to_string(lost) + " lost (" + last_claim_loss_ + "): writes made here to blocks " + list +
             (lost > claims_lost_.size() ? ", ..." : "") + " are gone");
}

// A RECOVER from a child: see AdvanceRecover. Taken when a failed child
// held WRITE (the claimant was below it) or the claimant holds it already;
// IN_RECOVERY (ask again) while another live child holds WRITE, or an
// invalidation of the block is under way: the claimant's lost parent may
// be that child, not yet found failed; superseded otherwise.
void Replica::ServeRecover(uint64_t block, const Job& j, const Bytes& data, Time now) {
  const BlockState st = StateOf(block);
  const ChildIndex claimant = children_.IndexOf(j.from);
  bool failed_writer = false, live_writer = false;
  for (uint64_t bits = st.holders; bits; bits &= bits - 1) {
    const ChildIndex c = __builtin_ctzll(bits);
    if (c == claimant || st.GrantOf(c) != Perm::kWrite) continue;
    (child_leases_.IsFailed(children_.LinkOf(c)) ? failed_writer : live_writer) = true;
  }
  Message r = ReplyFor(j.reply_xid);
  r.volume_id = cfg_.volume_id;
  r.block_num = block;
  auto run = runs_.find(block);
  const bool pending = run != runs_.end() && run->second.acks > 0;
  // Our own right to the block is unsettled while our lease has lapsed or
  // we are claiming it back ourselves (after our own rejoin).
  const bool own_claim = run != runs_.end() && !run->second.jobs.empty() && run->second.jobs.front().as<RecoverJob>();
  const bool unsettled = cfg_.is_root ? !HasAuthority(now) : !LeaseValid(now) || own_claim;
  // Just after a takeover the root knows no grants: a claim is taken on
  // trust unless another claimant got there first.
  if (cfg_.is_root && now < claims_until_ && !live_writer && !pending) failed_writer = true;
  const bool claimant_writes = st.GrantOf(claimant) == Perm::kWrite;
  if ((!failed_writer && !claimant_writes && (live_writer || pending)) || unsettled) {
    Fail(j, WireStatus::kInRecovery, "block " + std::to_string(block) + ": a claim that cannot be settled yet");
    return;
  }
  // What we hold, whatever the time left on the block's own grant.
  if ((!failed_writer && !claimant_writes) || (!cfg_.is_root && st.held != Perm::kWrite)) {
    // Superseded, unless the bytes claimed are what we hold already (a
    // FLUSH of them arrived before the link went) and no one below us holds
    // WRITE: then nothing is lost. READ says so; no grant is recorded.
    Bytes mine;
    const bool same = !live_writer && !pending && GetCopy(block, &mine) && mine == data;
    r.permissions = same ? WirePerm::kRead : WirePerm::kNone;
    Finish(j, r);
    return;
  }
  // Taken: the bytes need a slot here now (a claim is served at once).
  uint64_t costly = BlockTable::kNoBlock;
  if (!InstallNow(block, now, &costly)) {
    if (costly != BlockTable::kNoBlock) StartEvict(costly, now);
    Fail(j, WireStatus::kInRecovery, "block " + std::to_string(block) + ": no room yet for the claim");
    return;
  }
  PutCopy(block, data, /*dirty=*/true);
  Changed(block);
  if (cfg_.is_root && cfg_.write_through) WriteBack({block}, 0);
  // The claimant holds WRITE now; the failed node's grant stays until its
  // lease is over, keeping everyone else out meanwhile.
  Store(block, Step(StateOf(block), Event{Event::Kind::kRecoverClaim, claimant, Perm::kWrite}).next);
  r.permissions = WirePerm::kWrite;
  r.ttl_ms = TtlLeft(block, now);
  r.hb_ttl_ms = hb_ttl_ms_;
  r.version = StateOf(block).version;
  ++claims_served_;
  Finish(j, r);
}

void Replica::TakeOver(Time now) {
  now_ = now;
  // Children of an earlier term here (this root served before, stepped
  // down, and serves again) have long joined the other root: let them go.
  std::vector<LinkId> old = children_.Links();
  for (LinkId c : child_leases_.Live()) old.push_back(c);
  for (const auto& [c, until] : child_leases_.failed()) old.push_back(c);
  std::sort(old.begin(), old.end());
  old.erase(std::unique(old.begin(), old.end()), old.end());
  for (LinkId c : old) {
    if (c == kLocal) continue;
    effects_.close_children.push_back(c);
    children_.ForgetFlags(c);
  }
  children_.RetireAll();
  child_leases_.Clear();
  writer_lock_.ForgetChildren();
  // Versions given out before (if this root served before) may name bytes
  // the other root has changed since: start a new epoch.
  const uint64_t before = version_epoch_;
  std::random_device rd;
  do {
    version_epoch_ = cfg_.version_epoch ? (version_epoch_ % 0xfffffe) + 1 : 1 + rd() % 0xfffffe;
  } while (version_epoch_ == before);
  table_->SetVersionEpoch(version_epoch_);
  authority_until_ = Time::max();
  claims_until_ = now + std::chrono::milliseconds(hb_ttl_ms_ + margin_ms());
  // What this node kept of the store may be stale: the other root wrote it
  // (through, so nothing dirty is here).
  table_->ForEach([&](BlockTable::Locked& set, BlockTable::Slot& s) {
    if (s.empty() || s.busy || s.dirty || runs_.count(s.block)) return;
    s.holders = 0;
    s.child_writes = false;
    table_->Free(set, &s);
  });
  LogWarning("volume " + cfg_.volume_name + ": took the volume over; for " + std::to_string(hb_ttl_ms_ + margin_ms()) +
             " ms children's claims (RECOVER) are taken on trust and other requests wait");
  AfterEvent();
}

}  // namespace vshare
