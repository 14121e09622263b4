#include "core/file_store.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

using namespace vshare;

namespace {
// A temporary file of `size` bytes, removed on scope exit.
struct TempImage {
  std::string path;
  explicit TempImage(uint64_t size) {
    char tmpl[] = "/tmp/vshare-fs-XXXXXX";
    int fd = mkstemp(tmpl);
    REQUIRE(fd >= 0);
    REQUIRE(ftruncate(fd, static_cast<off_t>(size)) == 0);
    close(fd);
    path = tmpl;
  }
  ~TempImage() { unlink(path.c_str()); }
  std::vector<char> Bytes() const {
    std::ifstream f(path, std::ios::binary);
    return std::vector<char>(std::istreambuf_iterator<char>(f), {});
  }
};
}  // namespace

TEST_CASE("file store writes reach the file and read back") {
  TempImage img(8192);
  std::unique_ptr<FileStore> fs;
  REQUIRE(FileStore::Open(img.path, 4096, false, &fs).ok());
  CHECK(fs->size() == 8192);
  CHECK(fs->block_count() == 2);
  std::vector<std::byte> blk(4096, std::byte{0x5a});
  REQUIRE(fs->WriteBlock(1, blk).ok());
  REQUIRE(fs->Sync().ok());
  auto bytes = img.Bytes();
  CHECK(bytes[4096] == 0x5a);
  CHECK(bytes[8191] == 0x5a);
  CHECK(bytes[4095] == 0);
  std::vector<std::byte> back(4096);
  REQUIRE(fs->ReadBlock(1, back).ok());
  CHECK(back == blk);
  CHECK(fs->ReadBlock(2, back).code() == Status::Code::kOutOfRange);
}

TEST_CASE("a partial last block reads as zeros past the end and never grows the file") {
  TempImage img(4096 + 1000);
  std::unique_ptr<FileStore> fs;
  REQUIRE(FileStore::Open(img.path, 4096, false, &fs).ok());
  CHECK(fs->block_count() == 2);
  std::vector<std::byte> blk(4096, std::byte{1});
  REQUIRE(fs->WriteBlock(1, blk).ok());
  CHECK(img.Bytes().size() == 5096);
  std::vector<std::byte> back(4096, std::byte{9});
  REQUIRE(fs->ReadBlock(1, back).ok());
  CHECK(back[999] == std::byte{1});
  CHECK(back[1000] == std::byte{0});
}

TEST_CASE("file store open errors name the path") {
  std::unique_ptr<FileStore> fs;
  Status st = FileStore::Open("/nonexistent/vshare.img", 4096, false, &fs);
  CHECK(st.code() == Status::Code::kNotFound);
  CHECK(st.message().find("/nonexistent/vshare.img") != std::string::npos);
  CHECK(FileStore::Open("/tmp", 4096, false, &fs).code() != Status::Code::kOk);
  TempImage empty(0);
  st = FileStore::Open(empty.path, 4096, false, &fs);
  CHECK(st.message().find("empty") != std::string::npos);
}
