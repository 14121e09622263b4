// Opening an image file: the writer lease and the open flags, apart from
// the FUSE plumbing so that it can be tested without a mount.
#pragma once

#include <fcntl.h>

#include "core/volume_io.h"

namespace vshare {

// The file handle of an image opened for writing: it holds the writer lease,
// and its release gives the lease back.
inline constexpr uint64_t kWriterHandle = 1;

// Answers an open of `v`'s image on `r`. A write-open first takes the
// writer lease (VolumeIo::OpenForWrite) and marks the handle. If the kernel
// then refuses the answer (the open was interrupted while the lease was
// being taken), it never sends a release for this handle: the lease is
// given back here instead, or it would stay held until the node exits.
template <typename FileInfo, typename R>
void OpenImage(VolumeIo& v, FileInfo* fi, R& r, bool kernel_cache = false) {
  const int acc = fi->flags & O_ACCMODE;
  if (acc != O_RDONLY && v.read_only()) {
    r.Err(EROFS);
    return;
  }
  fi->fh = 0;
  if (acc != O_RDONLY) {
    if (Status st = v.OpenForWrite(); !st.ok()) {
      r.Status(st);
      return;
    }
    fi->fh = kWriterHandle;
  }
  // --kernel-cache: the kernel keeps pages across opens; vshare drops them
  // when they go stale (core/kernel_pages.cc).
  fi->direct_io = kernel_cache ? 0 : 1;
  fi->keep_cache = kernel_cache ? 1 : 0;
  if (r.Open(fi) != 0 && fi->fh == kWriterHandle) v.CloseForWrite();
}

}  // namespace vshare
