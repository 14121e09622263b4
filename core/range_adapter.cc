#include "core/range_adapter.h"

#include "core/log.h"

#include <algorithm>
#include <cstring>
#include <optional>

namespace vshare {

namespace {

uint64_t DestKey(const Outgoing& o) { return o.to_parent ? ~uint64_t{0} : o.child; }

// What two per-block messages must share to travel as one: everything but
// the block, its bytes, its version and (for answers) the TTLs, which are
// merged separately.
Message Shape(const Message& m, bool answer) {
  Message s = m;
  s.xid = 0;
  s.block_num.reset();
  s.data.reset();
  s.version.reset();
  if (answer) {
    s.ttl_ms.reset();
    s.hb_ttl_ms.reset();
    s.flags &= static_cast<uint16_t>(~msg_flags::kMore);
  }
  return s;
}

bool MergeableCall(const Outgoing& o) {
  if (o.kind != Outgoing::Kind::kCall || !o.msg.block_num || o.msg.count) return false;
  return o.msg.opcode == Opcode::kIoRequest || o.msg.opcode == Opcode::kForward || o.msg.opcode == Opcode::kInvalidate;
}

// One buffer for the pieces, without copying when they already lie side by
// side in one.
Bytes Concat(const std::vector<Bytes>& pieces) {
  if (pieces.empty()) return Bytes();
  if (std::all_of(pieces.begin(), pieces.end(), [](const Bytes& p) { return p.IsSharedZeros(); })) {
    size_t n = 0;
    for (const Bytes& p : pieces) n += p.size();
    return Bytes::Zeros(n);  // a table without bytes: nothing to copy
  }
  bool adjoin = true;
  for (size_t i = 1; i < pieces.size() && adjoin; ++i) adjoin = pieces[i - 1].Adjoins(pieces[i]);
  if (adjoin) {
    Bytes b = pieces[0];
    for (size_t i = 1; i < pieces.size(); ++i) b.Extend(pieces[i]);
    return b;
  }
  size_t n = 0;
  for (const Bytes& p : pieces) n += p.size();
  uint8_t* w;
  Bytes out = Bytes::Allocate(n, &w);
  for (const Bytes& p : pieces) {
    std::memcpy(w, p.data(), p.size());
    w += p.size();
  }
  return out;
}

}  // namespace

uint32_t RangeAdapter::max_blocks() const {
  return static_cast<uint32_t>(std::clamp<uint64_t>(kMaxRangeBytes / block_size_, 1, 8192));
}

std::vector<Message> RangeAdapter::Split(bool from_parent, LinkId from, const Message& m) {
  const uint64_t key = Open(from_parent, from, m);
  std::vector<Message> out;
  out.reserve(m.blocks());
  for (uint32_t i = 0; i < m.blocks(); ++i) out.push_back(Request(key, m, i));
  return out;
}

uint64_t RangeAdapter::Open(bool from_parent, LinkId from, const Message& m) {
  const uint64_t key = next_split_++;
  const uint32_t n = m.blocks();
  splits_[key] = {from_parent, from, m.xid, *m.block_num, n, n, std::vector<bool>(n, false)};
  return key;
}

Message RangeAdapter::Request(uint64_t key, const Message& m, uint32_t i) const {
  // Everything but the range's own fields, copied one by one: copying the
  // whole message would copy its VERSIONS for every block.
  Message b;
  b.opcode = m.opcode;
  b.hops_left = m.hops_left;
  b.flags = m.flags;
  b.originator = m.originator;
  b.xid = PartXid(key, i);
  b.volume_name = m.volume_name;
  b.volume_id = m.volume_id;
  b.connect_flags = m.connect_flags;
  b.block_num = *m.block_num + i;
  b.permissions = m.permissions;
  b.verifier = m.verifier;
  b.key = m.key;
  b.ttl_ms = m.ttl_ms;
  b.hb_ttl_ms = m.hb_ttl_ms;
  b.status = m.status;
  b.err_param = m.err_param;
  b.err_value = m.err_value;
  b.io_op = m.io_op;
  b.protocol_version = m.protocol_version;
  b.parent_list = m.parent_list;
  b.cookie = m.cookie;
  b.volume_size = m.volume_size;
  b.block_size = m.block_size;
  if (!m.versions) b.version = m.version;
  else if ((*m.versions)[i]) b.version = (*m.versions)[i];
  if (m.data) b.data = m.data->Slice(size_t{i} * block_size_, block_size_);
  return b;
}

uint8_t* RangeAdapter::AnswerBuffer(uint64_t xid, Bytes* slice) {
  if (!IsPrivate(xid)) return nullptr;
  return AnswerBuffer(SplitOf(xid), static_cast<uint32_t>(xid & ((uint64_t{1} << kIndexBits) - 1)), slice);
}

uint8_t* RangeAdapter::AnswerBuffer(uint64_t key, uint32_t i, Bytes* slice) {
  auto it = splits_.find(key);
  if (it == splits_.end()) return nullptr;
  OpenSplit& s = it->second;
  if (!s.writable) s.answers = Bytes::Allocate(size_t{s.count} * block_size_, &s.writable);
  *slice = s.answers.Slice(size_t{i} * block_size_, block_size_);
  return s.writable + size_t{i} * block_size_;
}

Bytes RangeAdapter::AnswerSlice(uint64_t key, uint32_t i, uint32_t count) const {
  const OpenSplit& s = splits_.at(key);
  return s.answers.Slice(size_t{i} * block_size_, size_t{count} * block_size_);
}

std::vector<Outgoing> RangeAdapter::Merge(std::vector<Outgoing> out, const std::function<uint64_t()>& new_call_id) {
  struct Group {
    bool part = false;  // an answer to a split (else a range call)
    uint64_t split = 0;
    Message shape;
    uint64_t first = 0;
    std::vector<uint64_t> calls;
    std::vector<std::optional<Bytes>> data;
    std::vector<uint64_t> versions;
    std::optional<uint32_t> ttl, hb;
    bool closed = false;
    bool more = false;
    uint32_t whole = 0;  // a part built whole, of this many blocks
    // A range call grows only below this block: a message after it (to the
    // same place) is about this one, and must stay behind what it covers.
    uint64_t grow_below = UINT64_MAX;
    size_t count() const { return data.size(); }
    uint64_t next() const { return first + count(); }
  };
  std::vector<Outgoing> result;
  result.reserve(out.size());
  std::vector<std::optional<Group>> groups;  // parallel to result
  std::unordered_map<uint64_t, size_t> last;  // destination -> index in result
  // Range calls still growing, by destination (newest last). Calls for
  // different blocks may pass one another, so a range call goes on growing
  // past messages about other blocks: a run of GETs interleaved with the
  // releases of the copies they evict becomes two ranges, not 2N calls.
  std::unordered_map<uint64_t, std::vector<size_t>> growing;
  constexpr size_t kGrowing = 4;
  const uint32_t limit = max_blocks();
  // A message about blocks [from, from + n) (n == 0: about no block, or
  // the link itself) joins the queue to `dest`: no range call to `dest`
  // may take in those blocks later, as that would move them ahead of it.
  auto fence = [&](uint64_t dest, uint64_t from, uint64_t n, size_t except) {
    auto it = growing.find(dest);
    if (it == growing.end()) return;
    auto& v = it->second;
    for (size_t gi : v) {
      if (gi == except) continue;
      Group& g = *groups[gi];
      if (n == 0 || (from <= g.next() && g.next() < from + n)) g.grow_below = g.next();
      else if (from > g.next()) g.grow_below = std::min(g.grow_below, from);
    }
    std::erase_if(v, [&](size_t gi) { return groups[gi]->grow_below <= groups[gi]->next(); });
  };

  auto close = [&](size_t i) {
    if (!groups[i] || groups[i]->closed) return;
    Group& g = *groups[i];
    g.closed = true;
    if (g.part) {
      auto s = splits_.find(g.split);
      g.more = s != splits_.end() && s->second.remaining > 0;
    }
  };
  auto start = [&](Outgoing&& o, std::optional<Group> g) {
    const uint64_t dest = DestKey(o);
    // A reply part ends where the next message to its place begins; a range
    // call grows on until fenced (see `fence`).
    if (auto it = last.find(dest); it != last.end() && groups[it->second] && groups[it->second]->part)
      close(it->second);
    result.push_back(std::move(o));
    groups.push_back(std::move(g));
    last[dest] = result.size() - 1;
  };
  auto absorb = [&](Group& g, const Message& m) {
    g.data.push_back(m.data);
    g.versions.push_back(m.version.value_or(0));
    if (m.ttl_ms) g.ttl = g.ttl ? std::min(*g.ttl, *m.ttl_ms) : *m.ttl_ms;
    if (m.hb_ttl_ms) g.hb = g.hb ? std::min(*g.hb, *m.hb_ttl_ms) : *m.hb_ttl_ms;
  };

  for (Outgoing& o : out) {
    const uint64_t dest = DestKey(o);
    auto prev = last.find(dest);
    Group* open = prev != last.end() && groups[prev->second] && !groups[prev->second]->closed ? &*groups[prev->second]
                                                                                               : nullptr;
    if (o.kind == Outgoing::Kind::kSend && IsPrivate(o.msg.xid)) {
      const uint64_t key = SplitOf(o.msg.xid);
      OpenSplit& s = splits_.find(key)->second;  // (IsPrivate: it is there)
      const uint32_t index = static_cast<uint32_t>(o.msg.xid & ((uint64_t{1} << kIndexBits) - 1));
      const uint64_t block = s.first + index;
      // Each block is answered once: a second answer (a job that failed
      // after its block was answered another way) would end the range before
      // another block's answer came, and that one would be lost.
      const uint32_t covers = o.msg.count ? *o.msg.count : 1;
      fence(dest, block, covers, SIZE_MAX);
      bool fresh = index + covers <= s.count;
      for (uint32_t k = 0; fresh && k < covers; ++k) fresh = !s.answered[index + k];
      if (!fresh) {
        LogWarning("range answer " + std::to_string(key) + ": block " + std::to_string(block) +
                   " answered twice (" + Describe(o.msg) + "); the second answer dropped");
        continue;
      }
      for (uint32_t k = 0; k < covers; ++k) s.answered[index + k] = true;
      if (o.msg.count) {  // a part built whole (PartXid)
        if (prev != last.end()) close(prev->second);  // before counting this one in
        s.remaining -= std::min(s.remaining, *o.msg.count);
        Group g;
        g.part = true;
        g.split = key;
        g.first = block;
        g.whole = *o.msg.count;
        start(std::move(o), std::move(g));
        close(result.size() - 1);
        continue;
      }
      Message shape = Shape(o.msg, true);
      shape.block_num.reset();
      if (open && open->part && open->split == key && block == open->first + open->count() && shape == open->shape) {
        --s.remaining;
        absorb(*open, o.msg);
        continue;
      }
      // The group before is closed before this answer is counted: it was not
      // the range's last part (this one comes after it), whatever the count
      // now says. (Closing it after would have ended the range one part early.)
      if (prev != last.end()) close(prev->second);
      --s.remaining;
      Group g;
      g.part = true;
      g.split = key;
      g.shape = std::move(shape);
      g.first = block;
      absorb(g, o.msg);
      start(std::move(o), std::move(g));
      continue;
    }
    if (MergeableCall(o)) {
      Message shape = Shape(o.msg, false);
      const bool with_data = o.msg.data.has_value();
      const uint64_t block = *o.msg.block_num;
      auto fits = [&](size_t gi) {
        const Group& g = *groups[gi];
        return !g.closed && !g.part && g.count() < limit && block == g.next() && block < g.grow_below &&
               shape == g.shape && with_data == g.data.front().has_value() &&
               (!with_data || o.msg.data->size() == block_size_) && o.timeout == result[gi].timeout;
      };
      auto& mine = growing[dest];
      auto into = std::find_if(mine.rbegin(), mine.rend(), fits);
      if (into != mine.rend()) {
        const size_t gi = *into;
        groups[gi]->calls.push_back(o.call_id);
        absorb(*groups[gi], o.msg);
        fence(dest, block, 1, gi);
        continue;
      }
      Group g;
      g.shape = std::move(shape);
      g.first = block;
      g.calls.push_back(o.call_id);
      absorb(g, o.msg);
      const bool grows = !(with_data && o.msg.data->size() != block_size_);
      if (!grows) g.closed = true;  // never grows
      fence(dest, block, 1, SIZE_MAX);
      start(std::move(o), std::move(g));
      if (grows) {
        auto& v = growing[dest];
        v.push_back(result.size() - 1);
        if (v.size() > kGrowing) v.erase(v.begin());
      }
      continue;
    }
    fence(dest, o.msg.block_num.value_or(0), o.msg.block_num ? o.msg.blocks() : 0, SIZE_MAX);
    start(std::move(o), std::nullopt);
  }
  for (size_t i = 0; i < result.size(); ++i) close(i);
  std::vector<size_t> dropped;  // parts of ranges already answered in full

  for (size_t i = 0; i < result.size(); ++i) {
    if (!groups[i]) continue;
    Group& g = *groups[i];
    Message& m = result[i].msg;
    const uint32_t n = static_cast<uint32_t>(g.count());
    if (!g.part) {
      if (n == 1) continue;  // a one-block call goes as it was made
      m.block_num = g.first;
      m.count = n;
      m.version.reset();
      if (std::any_of(g.versions.begin(), g.versions.end(), [](uint64_t v) { return v != 0; })) m.versions = g.versions;
      if (m.data) {
        std::vector<Bytes> pieces;
        for (auto& d : g.data) pieces.push_back(*d);
        m.data = Concat(pieces);
      }
      const uint64_t id = new_call_id();
      calls_[id] = RangeCall{g.first, g.calls, std::vector<bool>(n, false), n};
      result[i].call_id = id;
      continue;
    }
    auto found = splits_.find(g.split);
    if (found == splits_.end()) {
      LogWarning("range answer " + std::to_string(g.split) + ": a part for blocks from " + std::to_string(g.first) +
                 " came after the range was done; dropped");
      dropped.push_back(i);
      continue;
    }
    const OpenSplit& s = found->second;
    m.xid = s.xid;
    m.block_num = g.first;
    if (g.whole) {
      m.count = g.whole;
      m.flags = static_cast<uint16_t>((m.flags & ~msg_flags::kMore) | (g.more ? msg_flags::kMore : 0));
      if (!g.more) splits_.erase(g.split);
      continue;
    }
    m.count = n;
    m.flags = static_cast<uint16_t>((m.flags & ~msg_flags::kMore) | (g.more ? msg_flags::kMore : 0));
    m.version.reset();
    if (std::any_of(g.versions.begin(), g.versions.end(), [](uint64_t v) { return v != 0; })) m.versions = g.versions;
    if (g.ttl) m.ttl_ms = *g.ttl;
    if (g.hb) m.hb_ttl_ms = *g.hb;
    std::vector<Bytes> pieces;
    std::vector<uint8_t> mask((n + 7) / 8, 0);
    for (uint32_t k = 0; k < n; ++k)
      if (g.data[k]) {
        pieces.push_back(*g.data[k]);
        mask[k / 8] |= static_cast<uint8_t>(1u << (k % 8));
      }
    if (pieces.empty()) m.data.reset();
    else m.data = Concat(pieces);
    if (!pieces.empty() && pieces.size() != n) m.mask = std::move(mask);
    else m.mask.reset();
    if (!g.more) splits_.erase(g.split);
  }
  for (auto it = dropped.rbegin(); it != dropped.rend(); ++it) result.erase(result.begin() + static_cast<long>(*it));
  return result;
}

Message RangeAdapter::BlockReply(const Message& part, uint64_t block, std::optional<uint64_t> version,
                                 std::optional<Bytes> data) {
  Message r;
  r.opcode = part.opcode;
  r.hops_left = part.hops_left;
  r.flags = static_cast<uint16_t>(part.flags & ~msg_flags::kMore);
  r.originator = part.originator;
  r.xid = part.xid;
  r.volume_id = part.volume_id;
  r.block_num = block;
  r.permissions = part.permissions;
  r.ttl_ms = part.ttl_ms;
  r.hb_ttl_ms = part.hb_ttl_ms;
  r.status = part.status;
  r.err_param = part.err_param;
  r.version = version;
  r.data = std::move(data);
  return r;
}

std::vector<RangeAdapter::Answer> RangeAdapter::SplitReply(uint64_t call_id, const Status& st, const Message& reply,
                                                           std::vector<Granted>* granted) {
  std::vector<Answer> out;
  auto it = calls_.find(call_id);
  if (it == calls_.end()) return out;
  RangeCall& rc = it->second;
  const uint64_t size = rc.calls.size();
  auto fail_rest = [&](const Status& why) {
    for (uint64_t i = 0; i < size; ++i)
      if (!rc.answered[i]) out.push_back({rc.calls[i], why, {}});
    calls_.erase(it);
  };
  if (!st.ok()) {
    fail_rest(st);
    return out;
  }
  // Which blocks this part answers: all that are left, when it names none
  // (a refusal of the request as a whole).
  uint64_t first = rc.first, n = size;
  if (reply.block_num) {
    first = *reply.block_num;
    n = reply.blocks();
  }
  const uint64_t with_data =
      !reply.data ? 0
      : reply.mask ? [&] {
          uint64_t c = 0;
          for (uint64_t k = 0; k < n; ++k) c += k / 8 < reply.mask->size() && ((*reply.mask)[k / 8] >> (k % 8) & 1);
          return c;
        }()
                   : n;
  const bool well_formed = first >= rc.first && first - rc.first + n <= size &&
                           (!reply.data || reply.data->size() == with_data * block_size_) &&
                           (!reply.versions || reply.versions->size() == n) &&
                           (!reply.mask || reply.mask->size() == (n + 7) / 8);
  if (!well_formed) {
    fail_rest(Status::IOError("malformed answer to a range request: " + Describe(reply)));
    return out;
  }
  size_t next_data = 0;
  const bool plain = granted && reply.opcode == Opcode::kOkReply && !reply.mask && !reply.status;
  for (uint64_t k = 0; k < n; ++k) {
    const uint64_t i = first - rc.first + k;
    const bool has = reply.data && (!reply.mask || ((*reply.mask)[k / 8] >> (k % 8) & 1));
    std::optional<uint64_t> version = reply.version;
    if (reply.versions) version = (*reply.versions)[k] ? std::optional((*reply.versions)[k]) : std::nullopt;
    Bytes data;
    if (has) data = reply.data->Slice(next_data++ * block_size_, block_size_);
    if (rc.answered[i]) continue;  // said twice: the first answer stands
    rc.answered[i] = true;
    --rc.remaining;
    if (plain) granted->push_back({rc.calls[i], first + k, version, std::move(data)});
    else out.push_back({rc.calls[i], Status::Ok(), BlockReply(reply, first + k, version, has ? std::optional(data) : std::nullopt)});
  }
  if (rc.remaining == 0) {
    calls_.erase(it);
  } else if (!(reply.flags & msg_flags::kMore)) {
    fail_rest(Status::IOError("the answer to a range request left blocks out"));
  }
  return out;
}

}  // namespace vshare
