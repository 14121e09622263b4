#include "core/image_meta.h"

#include <sys/xattr.h>

#include <cerrno>

namespace vshare {

Status ValidateBlockSize(uint64_t bs) {
  if (bs < 512 || bs > (1u << 20) || (bs & (bs - 1)) != 0)
    return Status::InvalidArgument("bad block size " + std::to_string(bs) +
                                   ": must be a power of two from 512 to 1048576");
  return Status::Ok();
}

Status WriteImageBlockSize(const std::string& path, uint32_t block_size) {
  std::string v = std::to_string(block_size);
  if (setxattr(path.c_str(), kBlockSizeXattr, v.data(), v.size(), 0) != 0) {
    if (errno == ENOTSUP) return Status::Unsupported("the file system of " + path + " does not keep user xattrs");
    return Status::FromErrno(errno, "cannot record block size on " + path);
  }
  return Status::Ok();
}

Status ReadImageBlockSize(const std::string& path, uint32_t* block_size) {
  char buf[32];
  ssize_t n = getxattr(path.c_str(), kBlockSizeXattr, buf, sizeof buf - 1);
  if (n < 0) {
    if (errno == ENODATA || errno == ENOTSUP) {
      *block_size = kDefaultBlockSize;
      return Status::Ok();
    }
    return Status::FromErrno(errno, "cannot read " + std::string(kBlockSizeXattr) + " of " + path);
  }
  buf[n] = '\0';
  char* end = nullptr;
  unsigned long v = std::strtoul(buf, &end, 10);
  if (end == buf || *end != '\0' || !ValidateBlockSize(v).ok())
    return Status::InvalidArgument(path + " has a malformed " + kBlockSizeXattr + " ('" + buf + "')");
  *block_size = static_cast<uint32_t>(v);
  return Status::Ok();
}

}  // namespace vshare
