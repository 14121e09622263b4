#include "core/daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace vshare {

static_assert(sizeof(sigset_t) <= 128, "sigset_t does not fit");

bool Daemonize(const std::string& sub, const std::function<Status()>& start) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    std::fprintf(stderr, "vshare %s: cannot create a pipe: %s\n", sub.c_str(), std::strerror(errno));
    _exit(1);
  }
  pid_t pid = fork();
  if (pid < 0) {
    std::fprintf(stderr, "vshare %s: cannot fork: %s\n", sub.c_str(), std::strerror(errno));
    _exit(1);
  }
  if (pid > 0) {  // the caller's process: wait for the verdict
    close(fds[1]);
    std::string msg;
    char buf[512];
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof buf)) != 0) {
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) break;
      msg.append(buf, static_cast<size_t>(n));
    }
    if (msg == "ok") _exit(0);
    if (msg.empty()) msg = "the background process ended during start-up (see its log)";
    std::fprintf(stderr, "vshare %s: %s\n", sub.c_str(), msg.c_str());
    _exit(1);
  }
  close(fds[0]);
  setsid();
  if (chdir("/") != 0) {
  }
  int null = open("/dev/null", O_RDWR);
  if (null >= 0) {
    dup2(null, STDIN_FILENO);
    dup2(null, STDOUT_FILENO);
    dup2(null, STDERR_FILENO);
    if (null > STDERR_FILENO) close(null);
  }
  Status st = start();
  std::string verdict = st.ok() ? "ok" : st.message();
  ssize_t ignored = write(fds[1], verdict.data(), verdict.size());
  (void)ignored;
  close(fds[1]);
  return st.ok();
}

TerminationSignalsBlocked::TerminationSignalsBlocked() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGQUIT}) sigaddset(&set, s);
  pthread_sigmask(SIG_BLOCK, &set, reinterpret_cast<sigset_t*>(saved_));
}

TerminationSignalsBlocked::~TerminationSignalsBlocked() {
  pthread_sigmask(SIG_SETMASK, reinterpret_cast<sigset_t*>(saved_), nullptr);
}

}  // namespace vshare
