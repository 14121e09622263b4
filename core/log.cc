#include "core/log.h"

#include <syslog.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <mutex>

namespace vshare {

namespace {
std::mutex g_mu;
LogSink g_sink = LogSink::kStderr;  // guarded by g_mu
FILE* g_file = nullptr;             // guarded by g_mu
bool g_verbose = false;

const char* LevelName(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarning: return "warning";
    case LogLevel::kError: return "error";
  }
  return "?";
}

int SyslogPriority(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug: return LOG_DEBUG;
    case LogLevel::kInfo: return LOG_INFO;
    case LogLevel::kWarning: return LOG_WARNING;
    case LogLevel::kError: return LOG_ERR;
  }
  return LOG_INFO;
}
}  // namespace

bool SetLogSink(LogSink sink, const std::string& path) {
  std::lock_guard lock(g_mu);
  FILE* f = nullptr;
  if (sink == LogSink::kFile) {
    f = std::fopen(path.c_str(), "ae");
    if (!f) return false;
    std::setvbuf(f, nullptr, _IOLBF, 0);
  }
  if (g_file) std::fclose(g_file);
  g_file = f;
  if (sink == LogSink::kSyslog) openlog("vshare", LOG_PID, LOG_DAEMON);
  g_sink = sink;
  return true;
}

void SetLogVerbose(bool verbose) { g_verbose = verbose; }

void Log(LogLevel level, const std::string& line) {
  if (level == LogLevel::kDebug && !g_verbose) return;
  std::lock_guard lock(g_mu);
  if (g_sink == LogSink::kSyslog) {
    syslog(SyslogPriority(level), "%s", line.c_str());
    return;
  }
  char stamp[32];
  std::time_t now = std::time(nullptr);
  std::tm tm;
  gmtime_r(&now, &tm);
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
  FILE* out = g_sink == LogSink::kFile ? g_file : stderr;
  std::fprintf(out, "%s vshare[%d] %s: %s\n", stamp, static_cast<int>(getpid()), LevelName(level),
               line.c_str());
  std::fflush(out);
}

}  // namespace vshare
