#include "fuse/reply.h"

#include <doctest/doctest.h>

#include "fuse/image_open.h"

using namespace vshare;

namespace {

// A kernel that records what it was told, and can refuse an open's answer
// as the real one does when the caller was interrupted.
struct FakeKernel {
  using Req = int*;  // the count of answers this request got
  struct FileInfo {
    int flags = 0;
    uint64_t fh = 0;
    unsigned direct_io = 0, keep_cache = 0;
  };
  struct EntryParam {};
  static inline int open_result = 0;
  static inline int last_err = -1;
  static int Err(Req r, int err) {
    ++*r;
    last_err = err;
    return 0;
  }
  static int Entry(Req r, const EntryParam*) { return ++*r, 0; }
  static int Attr(Req r, const struct stat*, double) { return ++*r, 0; }
  static int Open(Req r, const FileInfo*) { return ++*r, open_result; }
  static int Buf(Req r, const void*, size_t) { return ++*r, 0; }
  static int Write(Req r, size_t) { return ++*r, 0; }
  static int Statfs(Req r, const struct statvfs*) { return ++*r, 0; }
};
using TestReply = BasicReply<FakeKernel>;

struct LeaseCountingVolume final : VolumeIo {
  int held = 0;
  std::string name_ = "v";
  const std::string& name() const override { return name_; }
  uint64_t size() const override { return 4096; }
  uint32_t block_size() const override { return 4096; }
  bool read_only() const override { return false; }
  CacheGeometry cache_geometry() const override { return {}; }
  Status Read(uint64_t, std::span<std::byte>, size_t*) override { return Status::Ok(); }
  Status Write(uint64_t, std::span<const std::byte>, size_t*) override { return Status::Ok(); }
  Status Flush() override { return Status::Ok(); }
  Status DropCache() override { return Status::Ok(); }
  Status OpenForWrite() override {
    ++held;
    return Status::Ok();
  }
  void CloseForWrite() override { --held; }
  VolumeStats stats() const override { return {}; }
  void ResetStats() override {}
};

}  // namespace

TEST_CASE("a Reply answers once: a second answer is dropped, a forgotten one becomes EIO") {
  int answers = 0;
  {
    TestReply r(&answers);
    r.Err(0);
    r.Write(5);  // a bug in a handler: must not reach the kernel again
    CHECK(r.answered());
  }
  CHECK(answers == 1);
  answers = 0;
  { TestReply r(&answers); }
  CHECK(answers == 1);
  CHECK(FakeKernel::last_err == EIO);
}

TEST_CASE("a write-open whose answer the kernel refuses gives the writer lease back") {
  LeaseCountingVolume v;
  int answers = 0;
  FakeKernel::FileInfo fi;
  fi.flags = O_RDWR;
  FakeKernel::open_result = 0;
  {
    TestReply r(&answers);
    OpenImage(v, &fi, r);
  }
  CHECK(v.held == 1);  // a normal open keeps it until release
  CHECK(fi.fh == kWriterHandle);
  FakeKernel::open_result = -ENOENT;  // interrupted while the lease was taken
  {
    TestReply r(&answers);
    OpenImage(v, &fi, r);
  }
  CHECK(v.held == 1);  // the second one was given back at once
  fi.flags = O_RDONLY;
  {
    TestReply r(&answers);
    OpenImage(v, &fi, r);
  }
  CHECK(fi.fh == 0);  // read-only opens take nothing
  CHECK(v.held == 1);
  FakeKernel::open_result = 0;
}
