#include "core/status.h"

#include <cerrno>
#include <cstring>

namespace vshare {

Status Status::FromErrno(int err, std::string_view what) {
  std::string msg = std::string(what) + ": " + std::strerror(err);
  switch (err) {
    case ENOENT: return NotFound(std::move(msg));
    case EEXIST: return AlreadyExists(std::move(msg));
    case EACCES:
    case EPERM: return PermissionDenied(std::move(msg));
    case EINVAL: return InvalidArgument(std::move(msg));
    case EBUSY: return Busy(std::move(msg));
    case ENOSPC:
    case EFBIG:
    case EDQUOT: return NoSpace(std::move(msg));
    case ETIMEDOUT: return TimedOut(std::move(msg));
    case EOPNOTSUPP: return Unsupported(std::move(msg));
    default: return IOError(std::move(msg));
  }
}

const char* Status::CodeName(Code c) {
  switch (c) {
    case Code::kOk: return "ok";
    case Code::kInvalidArgument: return "invalid argument";
    case Code::kNotFound: return "not found";
    case Code::kAlreadyExists: return "already exists";
    case Code::kOutOfRange: return "out of range";
    case Code::kNoSpace: return "no space";
    case Code::kIOError: return "I/O error";
    case Code::kBusy: return "busy";
    case Code::kPermissionDenied: return "permission denied";
    case Code::kUnsupported: return "unsupported";
    case Code::kTimedOut: return "timed out";
  }
  return "unknown";
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  return std::string(CodeName(code_)) + ": " + message_;
}

}  // namespace vshare
