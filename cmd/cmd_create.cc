// vshare create IMAGE --size SIZE [--block-size N] [--force]
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>

#include "cmd/cli.h"
#include "core/image_meta.h"
#include "core/size.h"

namespace po = boost::program_options;

namespace vshare::cli {

int Create(const Args& args) {
  const std::string sub = "create";
  CommandLine cl(sub, "usage: vshare create IMAGE --size SIZE [options]");
  cl.Positional("image", "image file to create");
  cl.Options()
      ("size,s", po::value<std::string>(), "volume size, e.g. 256M, 10G")
      ("block-size,b", po::value<std::string>()->default_value("4096"), "block size in bytes (power of two, 512..1M)")
      ("force", "overwrite an existing file");
  int rc;
  if (!cl.Parse(args, &rc)) return rc;
  if (!cl.Has("size")) return UsageError(sub, "missing --size");
  const std::string path = cl.Get<std::string>("image");

  uint64_t size = 0, bs = 0;
  Status st = ParseSize(cl.Get<std::string>("size"), &size);
  if (!st.ok()) return UsageError(sub, "--size: " + st.message());
  st = ParseSize(cl.Get<std::string>("block-size"), &bs);
  if (st.ok()) st = ValidateBlockSize(bs);
  if (!st.ok()) return UsageError(sub, "--block-size: " + st.message());
  if (size % bs != 0)
    return UsageError(sub, "--size " + std::to_string(size) + " is not a multiple of the block size " +
                               std::to_string(bs));
  if (size > static_cast<uint64_t>(std::numeric_limits<off_t>::max()))
    return UsageError(sub, "--size is too large");

  const bool force = cl.Has("force");
  struct stat existing;
  if (stat(path.c_str(), &existing) == 0) {
    if (!force) return Fail(sub, path + " already exists (use --force to overwrite it)");
    if (!S_ISREG(existing.st_mode)) return Fail(sub, path + " exists and is not a regular file");
  }
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (force ? O_TRUNC : O_EXCL), 0644);
  if (fd < 0) return Fail(sub, "cannot create " + path + ": " + std::strerror(errno));
  // ftruncate leaves the file sparse: no data blocks until written.
  if (ftruncate(fd, static_cast<off_t>(size)) != 0 || fsync(fd) != 0) {
    int err = errno;
    close(fd);
    unlink(path.c_str());
    return Fail(sub, "cannot size " + path + ": " + std::strerror(err));
  }
  close(fd);
  st = WriteImageBlockSize(path, static_cast<uint32_t>(bs));
  if (!st.ok() && bs != kDefaultBlockSize) {
    unlink(path.c_str());
    return Fail(sub, st.message() + "; a block size other than " + std::to_string(kDefaultBlockSize) +
                         " cannot be recorded there");
  }
  std::cout << "created " << path << ": " << FormatSize(size) << ", block size " << bs << "\n";
  return 0;
}

}  // namespace vshare::cli
