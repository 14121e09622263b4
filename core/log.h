// Logging: one line per event, to stderr, a file, or syslog.
//
// The sink is chosen once at start-up (before threads start) and may be
// switched when the process daemonises. Log() is thread-safe.
#pragma once

#include <string>

namespace vshare {

enum class LogLevel { kDebug, kInfo, kWarning, kError };

enum class LogSink { kStderr, kSyslog, kFile };
// Routes log lines to `sink`; `path` names the file for kFile. Returns false
// (and leaves the sink unchanged) when the file cannot be opened.
bool SetLogSink(LogSink sink, const std::string& path = "");
void SetLogVerbose(bool verbose);

void Log(LogLevel level, const std::string& line);
inline void LogInfo(const std::string& line) { Log(LogLevel::kInfo, line); }
inline void LogWarning(const std::string& line) { Log(LogLevel::kWarning, line); }
inline void LogError(const std::string& line) { Log(LogLevel::kError, line); }

}  // namespace vshare
