// Reply: answers one FUSE request exactly once.
//
// Every handler owns one Reply. The first reply method that runs answers
// the request; any later one does nothing but log the bug (the request is
// gone by then, and answering it again would crash libfuse). A Reply that
// goes out of scope unanswered answers EIO, so a forgotten path can never
// leave a caller hanging in the kernel.
//
// It is a template over the functions that talk to the kernel, so that the
// rules above can be unit-tested without a mount (fuse/reply_test.cc).
// FuseReplies below is the real set.
#pragma once

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <cerrno>
#include <cstddef>

#include "core/log.h"
#include "core/status.h"

namespace vshare {

// errno for a Status, the only place where one becomes the other.
int ToErrno(const Status& st);

template <typename Kernel>
class BasicReply {
 public:
  using Req = typename Kernel::Req;
  using FileInfo = typename Kernel::FileInfo;
  using EntryParam = typename Kernel::EntryParam;

  explicit BasicReply(Req req) : req_(req) {}
  BasicReply(const BasicReply&) = delete;
  BasicReply& operator=(const BasicReply&) = delete;
  ~BasicReply() {
    if (req_) Kernel::Err(req_, EIO);
  }

  void Err(int err) {
    if (!Answered()) Kernel::Err(Take(), err);
  }
  void Status(const vshare::Status& st) { Err(ToErrno(st)); }
  void Entry(const EntryParam& e) {
    if (!Answered()) Kernel::Entry(Take(), &e);
  }
  void Attr(const struct stat& st, double timeout) {
    if (!Answered()) Kernel::Attr(Take(), &st, timeout);
  }
  void Buf(const void* data, size_t n) {
    if (!Answered()) Kernel::Buf(Take(), data, n);
  }
  void Write(size_t n) {
    if (!Answered()) Kernel::Write(Take(), n);
  }
  void Statfs(const struct statvfs& s) {
    if (!Answered()) Kernel::Statfs(Take(), &s);
  }
  // Returns what the kernel said: 0, or a negative errno. An open whose
  // answer fails (-ENOENT: the caller was interrupted meanwhile) is unknown
  // to the kernel, which will send no release for it.
  [[nodiscard]] int Open(const FileInfo* fi) { return Answered() ? -EALREADY : Kernel::Open(Take(), fi); }
  bool answered() const { return req_ == Req{}; }
  Req req() const { return req_; }

 private:
  bool Answered() {
    if (req_ != Req{}) return false;
    LogError("internal error: a FUSE request was answered twice; the second answer is dropped");
    return true;
  }
  Req Take() {
    Req r = req_;
    req_ = Req{};
    return r;
  }
  Req req_;
};

}  // namespace vshare
