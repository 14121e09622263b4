#include "test/lin/linearizability.h"

#include <algorithm>
#include <functional>
#include <unordered_set>

namespace vshare::lin {

namespace {

std::string Show(const Op& o) {
  std::string s = "p" + std::to_string(o.process) + (o.is_write ? " write " : " read ") + o.value + " [" +
                  std::to_string(o.invoke) + ", " + (o.complete == kPending ? std::string("pending") : std::to_string(o.complete)) + "]";
  return s;
}

struct Search {
  const std::vector<Op>& ops;
  size_t max_states;
  std::vector<uint64_t> done;  // bitset of linearized operations
  size_t completed_left = 0;
  std::unordered_set<std::string> seen;  // memo: bitset + value
  bool limit_hit = false;

  bool Has(size_t i) const { return done[i / 64] >> (i % 64) & 1; }
  void Set(size_t i, bool on) {
    if (on) done[i / 64] |= uint64_t{1} << (i % 64);
    else done[i / 64] &= ~(uint64_t{1} << (i % 64));
  }

  std::string Key(const std::string& value) const {
    std::string k(reinterpret_cast<const char*>(done.data()), done.size() * sizeof(uint64_t));
    k.push_back('\0');
    k += value;
    return k;
  }

  // An operation may go next when no other operation still to be ordered
  // completed before it was invoked.
  bool Minimal(size_t i) const {
    for (size_t j = 0; j < ops.size(); ++j)
      if (j != i && !Has(j) && ops[j].complete < ops[i].invoke) return false;
    return true;
  }

  bool Run(const std::string& value) {
    if (completed_left == 0) return true;  // pending ones may never have happened
    if (seen.size() >= max_states) {
      limit_hit = true;
      return false;
    }
    if (!seen.insert(Key(value)).second) return false;
    for (size_t i = 0; i < ops.size(); ++i) {
      if (Has(i) || !Minimal(i)) continue;
      const Op& o = ops[i];
      if (!o.is_write && o.value != value) continue;  // this read cannot go here
      const std::string next = o.is_write ? o.value : value;
      Set(i, true);
      if (o.complete != kPending) --completed_left;
      bool ok = Run(next);
      if (o.complete != kPending) ++completed_left;
      Set(i, false);
      if (ok) return true;
      if (limit_hit) return false;
    }
    return false;
  }
};

}  // namespace

Verdict CheckRegister(const std::vector<Op>& input, const std::string& initial, size_t max_states) {
  // A pending read tells nothing; drop it.
  std::vector<Op> ops;
  for (const Op& o : input)
    if (o.is_write || o.complete != kPending) ops.push_back(o);
  std::sort(ops.begin(), ops.end(), [](const Op& a, const Op& b) { return a.invoke < b.invoke; });
  Search s{ops, max_states, std::vector<uint64_t>((ops.size() + 63) / 64, 0)};
  for (const Op& o : ops) s.completed_left += o.complete != kPending;
  if (s.Run(initial)) return {};
  Verdict v;
  v.linearizable = false;
  if (s.limit_hit) {
    v.why = "search limit reached";
    return v;
  }
  // Name the reads that no write could explain, or else the whole history.
  for (const Op& o : ops) {
    if (o.is_write) continue;
    bool explained = o.value == initial;
    for (const Op& w : ops) explained |= w.is_write && w.value == o.value && w.invoke < o.complete;
    if (!explained) v.why += "read of a value never written before it: " + Show(o) + "; ";
  }
  if (v.why.empty()) {
    v.why = "no order fits:";
    for (const Op& o : ops) v.why += " {" + Show(o) + "}";
  }
  return v;
}

HistoryReport CheckHistory(const std::map<uint64_t, std::vector<Op>>& by_key, const std::string& initial) {
  HistoryReport r;
  for (const auto& [key, ops] : by_key) {
    ++r.keys;
    r.operations += ops.size();
    Verdict v = CheckRegister(ops, initial);
    if (!v.linearizable) {
      ++r.violations;
      r.details.push_back("block " + std::to_string(key) + ": " + v.why);
    }
  }
  return r;
}

}  // namespace vshare::lin
