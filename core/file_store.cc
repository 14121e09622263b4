#include "core/file_store.h"

#include <limits.h>
#include <sys/uio.h>

#include <algorithm>
#include <vector>

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace vshare {

FileStore::FileStore(std::string path, int fd, uint64_t size, uint32_t block_size, bool read_only)
    : path_(std::move(path)), fd_(fd), size_(size), block_size_(block_size), read_only_(read_only) {}

FileStore::~FileStore() { ::close(fd_); }

Status FileStore::Open(const std::string& path, uint32_t block_size, bool read_only,
                       std::unique_ptr<FileStore>* out) {
  int fd = ::open(path.c_str(), (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "cannot open image " + path);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return Status::FromErrno(err, "cannot stat image " + path);
  }
  uint64_t size = 0;
  if (S_ISREG(st.st_mode)) {
    size = static_cast<uint64_t>(st.st_size);
  } else if (S_ISBLK(st.st_mode)) {
    if (::ioctl(fd, BLKGETSIZE64, &size) != 0) {
      int err = errno;
      ::close(fd);
      return Status::FromErrno(err, "cannot get size of block device " + path);
    }
  } else {
    ::close(fd);
    return Status::InvalidArgument("image " + path + " is not a regular file or block device");
  }
  if (size == 0) {
    ::close(fd);
    return Status::InvalidArgument("image " + path + " is empty");
  }
  out->reset(new FileStore(path, fd, size, block_size, read_only));
  return Status::Ok();
}

Status FileStore::ReadBlock(uint64_t block, std::span<std::byte> out) {
  if (out.size() != block_size_) return Status::InvalidArgument("ReadBlock: buffer is not one block");
  uint64_t off = block * block_size_;
  if (off >= size_) return Status::OutOfRange("block " + std::to_string(block) + " is past the end");
  size_t want = static_cast<size_t>(std::min<uint64_t>(block_size_, size_ - off));
  size_t got = 0;
  while (got < want) {
    ssize_t n = ::pread(fd_, out.data() + got, want - got, static_cast<off_t>(off + got));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, "read of " + path_);
    }
    if (n == 0) break;  // the file shrank under us; the rest reads as zeros
    got += static_cast<size_t>(n);
  }
  std::memset(out.data() + got, 0, out.size() - got);
  return Status::Ok();
}

Status FileStore::WriteBlock(uint64_t block, std::span<const std::byte> in) {
  if (in.size() != block_size_) return Status::InvalidArgument("WriteBlock: buffer is not one block");
  return WriteBlocks(block, in);
}

Status FileStore::ReadBlocks(uint64_t first, std::span<const std::span<std::byte>> outs) {
  if (outs.empty()) return Status::Ok();
  if (first + outs.size() > block_count()) return Status::OutOfRange("blocks past the end");
  std::vector<iovec> iov(std::min<size_t>(outs.size(), IOV_MAX));
  for (size_t i = 0; i < iov.size(); ++i) {
    if (outs[i].size() != block_size_) return Status::InvalidArgument("ReadBlocks: a buffer is not one block");
    iov[i] = {outs[i].data(), outs[i].size()};
  }
  ssize_t n;
  do {
    n = ::preadv(fd_, iov.data(), static_cast<int>(iov.size()), static_cast<off_t>(first * block_size_));
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Status::FromErrno(errno, "read of " + path_);
  // Whole blocks read in one go; the rest (a short read: the end of the
  // file, or more buffers than one call takes) one by one.
  for (size_t i = static_cast<size_t>(n) / block_size_; i < outs.size(); ++i)
    if (Status st = ReadBlock(first + i, outs[i]); !st.ok()) return st;
  return Status::Ok();
}

Status FileStore::WriteBlocks(uint64_t first, std::span<const std::byte> in) {
  if (read_only_) return Status::PermissionDenied("image " + path_ + " is read-only");
  if (in.size() % block_size_ != 0) return Status::InvalidArgument("WriteBlocks: not whole blocks");
  const uint64_t off = first * block_size_;
  if (first + in.size() / block_size_ > block_count()) return Status::OutOfRange("blocks past the end");
  const size_t want = static_cast<size_t>(std::min<uint64_t>(in.size(), size_ - off));
  size_t done = 0;
  while (done < want) {
    ssize_t n = ::pwrite(fd_, in.data() + done, want - done, static_cast<off_t>(off + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, "write of " + path_);
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status FileStore::Sync() {
  if (read_only_) return Status::Ok();
  if (::fdatasync(fd_) != 0) return Status::FromErrno(errno, "fdatasync of " + path_);
  return Status::Ok();
}

}  // namespace vshare
