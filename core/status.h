// Status: the one error type of vshare's core.
//
// A Status is either ok or carries a code and a human-readable message. Codes
// are storage-domain conditions, not errno values; the edges convert (errno to
// Status in FromErrno here, Status to errno only in fuse/, Status to a wire
// status only in net/). Statuses are cheap to copy when ok.
#pragma once

#include <string>
#include <string_view>

namespace vshare {

class Status {
 public:
  enum class Code {
    kOk = 0,
    kInvalidArgument,  // bad input from a user or a peer
    kNotFound,         // a file, volume or block that does not exist
    kAlreadyExists,
    kOutOfRange,       // I/O at or beyond the end of a volume
    kNoSpace,          // the backing store is full
    kIOError,          // the backing store failed
    kBusy,             // a resource is held by someone else
    kPermissionDenied,
    kUnsupported,
    kTimedOut,
  };

  Status() = default;
  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string msg) { return {Code::kInvalidArgument, std::move(msg)}; }
  static Status NotFound(std::string msg) { return {Code::kNotFound, std::move(msg)}; }
  static Status AlreadyExists(std::string msg) { return {Code::kAlreadyExists, std::move(msg)}; }
  static Status OutOfRange(std::string msg) { return {Code::kOutOfRange, std::move(msg)}; }
  static Status NoSpace(std::string msg) { return {Code::kNoSpace, std::move(msg)}; }
  static Status IOError(std::string msg) { return {Code::kIOError, std::move(msg)}; }
  static Status Busy(std::string msg) { return {Code::kBusy, std::move(msg)}; }
  static Status PermissionDenied(std::string msg) { return {Code::kPermissionDenied, std::move(msg)}; }
  static Status Unsupported(std::string msg) { return {Code::kUnsupported, std::move(msg)}; }
  static Status TimedOut(std::string msg) { return {Code::kTimedOut, std::move(msg)}; }
  static Status WithCode(Code c, std::string msg) { return {c, std::move(msg)}; }

  // Builds a Status from an errno value; `what` names the failed operation.
  static Status FromErrno(int err, std::string_view what);

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // "code: message", for logs.
  std::string ToString() const;
  static const char* CodeName(Code c);

 private:
  Status(Code c, std::string msg) : code_(c), message_(std::move(msg)) {}
  Code code_ = Code::kOk;
  std::string message_;
};

}  // namespace vshare
