// A linearizability checker for histories of block reads and writes, with
// one read/write register per block (blocks are independent, so each is
// checked on its own: linearizability is compositional).
//
// An operation is invoked at one time and completes at a later one; a
// pending operation (a timeout, a crash) never completed and may or may not
// have taken effect. The check searches for a total order of the operations
// that respects real time (an operation that completed before another was
// invoked comes first) and in which every read returns the value of the
// latest write before it (or the initial value). The search is Wing and
// Gong's, with Lowe's memoization of visited (set of ordered operations,
// register value) pairs; with distinct write values it stays small for the
// short histories the tests record.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

namespace vshare::lin {

inline constexpr double kPending = std::numeric_limits<double>::infinity();

struct Op {
  int process = 0;
  bool is_write = false;
  std::string value;       // written, or returned by the read
  double invoke = 0;
  double complete = kPending;
};

struct Verdict {
  bool linearizable = true;
  std::string why;  // for a violation: the operations that cannot be ordered
};

// One register's history. `max_states` bounds the search; past it the
// verdict is "not linearizable" with why = "search limit reached".
Verdict CheckRegister(const std::vector<Op>& ops, const std::string& initial, size_t max_states = 2'000'000);

struct HistoryReport {
  size_t keys = 0;
  size_t operations = 0;
  size_t violations = 0;
  std::vector<std::string> details;  // one per violating key
};
HistoryReport CheckHistory(const std::map<uint64_t, std::vector<Op>>& by_key, const std::string& initial);

}  // namespace vshare::lin
