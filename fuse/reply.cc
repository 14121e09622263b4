#include "fuse/reply.h"

namespace vshare {

int ToErrno(const Status& st) {
  switch (st.code()) {
    case Status::Code::kOk: return 0;
    case Status::Code::kInvalidArgument: return EINVAL;
    case Status::Code::kNotFound: return ENOENT;
    case Status::Code::kAlreadyExists: return EEXIST;
    case Status::Code::kOutOfRange: return ENOSPC;  // past the end of a fixed-size image
    case Status::Code::kNoSpace: return ENOSPC;
    case Status::Code::kIOError: return EIO;
    case Status::Code::kBusy: return EBUSY;
    case Status::Code::kPermissionDenied: return EACCES;
    case Status::Code::kUnsupported: return EOPNOTSUPP;
    case Status::Code::kTimedOut: return EIO;  // applications see EIO, never a hang
  }
  return EIO;
}

}  // namespace vshare
