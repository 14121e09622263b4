#include "fuse/control.h"

#include <nlohmann/json.hpp>

#include "core/log.h"

namespace vshare {

namespace {

Status Parse(std::string_view text, std::string* cmd, std::string* parent) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::InvalidArgument("control: not valid JSON: " + std::string(text));
  if (!j.is_object()) return Status::InvalidArgument("control: expected a JSON object like {\"cmd\":\"flush\"}");
  auto it = j.find("cmd");
  if (it == j.end() || !it->is_string())
    return Status::InvalidArgument("control: missing string field \"cmd\"");
  *cmd = it->get<std::string>();
  for (auto& [key, value] : j.items()) {
    if (key == "cmd") continue;
    if (key == "parent" && *cmd == "reparent") {
      if (!value.is_string()) return Status::InvalidArgument("control: \"parent\" must be a string HOST:PORT");
      *parent = value.get<std::string>();
      continue;
    }
    return Status::InvalidArgument("control: command '" + *cmd + "' takes no field '" + key + "'");
  }
  if (*cmd == "reparent" && parent->empty())
    return Status::InvalidArgument("control: reparent needs \"parent\": \"HOST:PORT\"");
  return Status::Ok();
}

}  // namespace

Status ExecuteControl(Node& node, std::string_view text) {
  // Trailing newlines from `echo` are not part of the command.
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == '\0'))
    text.remove_suffix(1);
  std::string cmd, parent;
  Status st = Parse(text, &cmd, &parent);
  if (st.ok()) {
    if (cmd == "flush") {
      st = node.FlushAll();
    } else if (cmd == "drop-cache") {
      st = node.DropCacheAll();
    } else if (cmd == "reset-stats") {
      node.ResetStats();
    } else if (cmd == "reparent") {
      st = node.Reparent(parent);
    } else {
      st = Status::InvalidArgument("control: unknown command '" + cmd +
                                   "' (known: flush, drop-cache, reset-stats, reparent)");
    }
  }
  if (st.ok()) LogInfo("control: " + cmd + " done");
  else node.SetLastError(st.message());
  return st;
}

}  // namespace vshare
