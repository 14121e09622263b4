#include "test/lin/linearizability.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <random>

using namespace vshare::lin;

namespace {
Op W(int p, std::string v, double a, double b) { return Op{p, true, std::move(v), a, b}; }
Op R(int p, std::string v, double a, double b) { return Op{p, false, std::move(v), a, b}; }
}  // namespace

TEST_CASE("sequential and overlapping histories that fit a register") {
  CHECK(CheckRegister({W(1, "a", 0, 1), R(2, "a", 2, 3), W(1, "b", 4, 5), R(2, "b", 6, 7)}, "0").linearizable);
  CHECK(CheckRegister({R(1, "0", 0, 1)}, "0").linearizable);
  // A read overlapping a write may see either value.
  CHECK(CheckRegister({W(1, "a", 0, 10), R(2, "0", 1, 2), R(3, "a", 3, 4)}, "0").linearizable);
  // Concurrent writes may be ordered either way, but reads must agree.
  CHECK(CheckRegister({W(1, "a", 0, 5), W(2, "b", 0, 5), R(3, "a", 6, 7), R(4, "a", 8, 9)}, "0").linearizable);
  CHECK(CheckRegister({W(1, "a", 0, 5), W(2, "b", 0, 5), R(3, "b", 6, 7)}, "0").linearizable);
}

TEST_CASE("broken histories are flagged") {
  // A stale read: b was written and acknowledged before the read began.
  Verdict v = CheckRegister({W(1, "a", 0, 1), W(1, "b", 2, 3), R(2, "a", 4, 5)}, "0");
  CHECK_FALSE(v.linearizable);
  CHECK(v.why.find("no order fits") != std::string::npos);
  // A read from the future: the write started after the read ended.
  v = CheckRegister({R(2, "a", 0, 1), W(1, "a", 2, 3)}, "0");
  CHECK_FALSE(v.linearizable);
  CHECK(v.why.find("never written before it") != std::string::npos);
  // Two readers see two concurrent writes in opposite orders.
  CHECK_FALSE(CheckRegister({W(1, "a", 0, 5), W(2, "b", 0, 5), R(3, "a", 6, 7), R(3, "b", 8, 9), R(4, "b", 6, 7),
                             R(4, "a", 8, 9)},
                            "0")
                  .linearizable);
  // A value nobody wrote.
  CHECK_FALSE(CheckRegister({R(1, "zz", 0, 1)}, "0").linearizable);
  // A read goes back to the initial value after a completed write.
  CHECK_FALSE(CheckRegister({W(1, "a", 0, 1), R(2, "a", 2, 3), R(2, "0", 4, 5)}, "0").linearizable);
}

TEST_CASE("pending writes may or may not have happened; pending reads are ignored") {
  CHECK(CheckRegister({W(1, "a", 0, kPending), R(2, "0", 1, 2)}, "0").linearizable);
  CHECK(CheckRegister({W(1, "a", 0, kPending), R(2, "a", 1, 2)}, "0").linearizable);
  CHECK(CheckRegister({W(1, "a", 0, kPending), R(2, "a", 1, 2), R(2, "0", 3, 4)}, "0").linearizable == false);
  CHECK(CheckRegister({R(1, "q", 0, kPending)}, "0").linearizable);
}

TEST_CASE("histories are checked per block and counted") {
  std::map<uint64_t, std::vector<Op>> h;
  h[1] = {W(1, "a", 0, 1), R(2, "a", 2, 3)};
  h[2] = {W(1, "b", 0, 1), R(2, "0", 2, 3)};  // stale
  HistoryReport r = CheckHistory(h, "0");
  CHECK(r.keys == 2);
  CHECK(r.operations == 4);
  CHECK(r.violations == 1);
  REQUIRE(r.details.size() == 1);
  CHECK(r.details[0].rfind("block 2:", 0) == 0);
}

TEST_CASE("random histories of a real atomic register pass; a corrupted read in them is caught") {
  int corrupted = 0;
  for (uint32_t seed = 1; seed <= 50; ++seed) {
    CAPTURE(seed);
    std::mt19937 rng(seed);
    // Simulate 4 processes on an atomic register: each operation takes
    // effect at one instant inside its [invoke, complete] interval.
    std::vector<Op> ops;
    std::string value = "0";
    double t = 0;
    int next_value = 1;
    struct Open { Op op; double effect; };
    std::vector<Open> open;
    for (int step = 0; step < 40; ++step) {
      t += 1 + rng() % 3;
      Op o;
      o.process = static_cast<int>(rng() % 4);
      o.is_write = rng() % 2;
      o.invoke = t;
      double effect = t + (rng() % 5);
      o.complete = effect + (rng() % 5);
      if (o.is_write) o.value = "v" + std::to_string(next_value++);
      open.push_back({o, effect});
    }
    std::sort(open.begin(), open.end(), [](const Open& a, const Open& b) { return a.effect < b.effect; });
    for (Open& e : open) {
      if (e.op.is_write) value = e.op.value;
      else e.op.value = value;
      ops.push_back(e.op);
    }
    CHECK(CheckRegister(ops, "0").linearizable);
    // Make the last read that began after some write had completed return
    // the initial value, which that write (values are unique) overwrote.
    for (size_t i = ops.size(); i-- > 0;) {
      if (ops[i].is_write) continue;
      bool initial_overwritten = false;
      for (const Op& w : ops) initial_overwritten |= w.is_write && w.complete < ops[i].invoke;
      if (!initial_overwritten) continue;
      std::vector<Op> broken = ops;
      broken[i].value = "0";  // the initial value, overwritten long before
      CHECK_FALSE(CheckRegister(broken, "0").linearizable);
      ++corrupted;
      break;
    }
  }
  CHECK(corrupted >= 45);  // the corruption really was tried
}
