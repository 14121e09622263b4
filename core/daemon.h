// Process plumbing shared by the long-running commands (mount, serve).
#pragma once

#include <functional>
#include <string>

#include "core/status.h"

namespace vshare {

// Goes to the background and runs `start` there. The caller's process
// waits until `start` has finished, then exits: 0 when it succeeded, 1
// after printing "vshare SUB: reason" when it failed. Returns only in the
// background process: true to go on serving, false when `start` failed (the
// caller cleans up and exits non-zero). Call before any thread exists; the
// background process has a new session, / as its directory and /dev/null
// as standard input and output.
bool Daemonize(const std::string& sub, const std::function<Status()>& start);

// Blocks SIGTERM, SIGINT, SIGHUP and SIGQUIT in the calling thread while it
// lives, so threads created meanwhile never take them: they must reach the
// thread that acts on them (libfuse's loop, or a sigwait in main).
class TerminationSignalsBlocked {
 public:
  TerminationSignalsBlocked();
  ~TerminationSignalsBlocked();
  TerminationSignalsBlocked(const TerminationSignalsBlocked&) = delete;
  TerminationSignalsBlocked& operator=(const TerminationSignalsBlocked&) = delete;

 private:
  unsigned char saved_[128];  // a sigset_t, without the header here
};

}  // namespace vshare
