// lincheck: checks recorded histories of block reads and writes.
//
// Input: JSON lines, one operation each:
//   {"history":H,"block":B,"process":P,"type":"read"|"write","value":"...",
//    "invoke":T0,"complete":T1}       ("complete": null for a pending one)
// Each (history, block) is one register, checked on its own, starting from
// the value given with --initial (default ""). Prints one line per
// violation and a summary; exits 0 when there are none, 1 when there are,
// 2 on bad input.
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "test/lin/linearizability.h"

int main(int argc, char** argv) {
  using vshare::lin::Op;
  std::string path, initial;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--initial" && i + 1 < argc) initial = argv[++i];
    else if (path.empty() && a[0] != '-') path = a;
    else {
      std::cerr << "usage: lincheck [--initial VALUE] [FILE]\n";
      return 2;
    }
  }
  std::ifstream file;
  if (!path.empty()) {
    file.open(path);
    if (!file) {
      std::cerr << "lincheck: cannot open " << path << "\n";
      return 2;
    }
  }
  std::istream& in = path.empty() ? std::cin : file;
  std::map<std::pair<int64_t, uint64_t>, std::vector<Op>> registers;
  std::string line;
  size_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    try {
      if (j.is_discarded()) throw std::runtime_error("not JSON");
      Op op;
      op.process = j.at("process").get<int>();
      op.is_write = j.at("type").get<std::string>() == "write";
      op.value = j.at("value").get<std::string>();
      op.invoke = j.at("invoke").get<double>();
      op.complete = j.at("complete").is_null() ? vshare::lin::kPending : j.at("complete").get<double>();
      registers[{j.value("history", int64_t{0}), j.at("block").get<uint64_t>()}].push_back(op);
    } catch (const std::exception& e) {
      std::cerr << "lincheck: line " << n << ": " << e.what() << "\n";
      return 2;
    }
  }
  size_t ops = 0, violations = 0;
  std::map<int64_t, bool> histories;
  for (const auto& [key, list] : registers) {
    ops += list.size();
    histories[key.first] = true;
    vshare::lin::Verdict v = vshare::lin::CheckRegister(list, initial);
    if (!v.linearizable) {
      ++violations;
      std::cout << "history " << key.first << " block " << key.second << ": " << v.why << "\n";
    }
  }
  std::cout << histories.size() << " histories, " << registers.size() << " registers, " << ops << " operations, "
            << violations << " violations\n";
  return violations == 0 ? 0 : 1;
}
