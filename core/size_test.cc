#include "core/size.h"

#include <doctest/doctest.h>

using vshare::ParseSize;

TEST_CASE("ParseSize accepts plain and suffixed sizes") {
  uint64_t v = 0;
  CHECK(ParseSize("4096", &v).ok());
  CHECK(v == 4096);
  CHECK(ParseSize("256M", &v).ok());
  CHECK(v == 256ull << 20);
  CHECK(ParseSize("10G", &v).ok());
  CHECK(v == 10ull << 30);
  CHECK(ParseSize("1.5K", &v).ok());
  CHECK(v == 1536);
  CHECK(ParseSize("2MiB", &v).ok());
  CHECK(v == 2ull << 20);
  CHECK(ParseSize("1t", &v).ok());
  CHECK(v == 1ull << 40);
}

TEST_CASE("ParseSize rejects bad sizes with a reason") {
  uint64_t v = 7;
  for (const char* bad : {"", "abc", "-5M", "0", "12Q", "1.", "10GG", "0.3", "99999999999999999999",
                          "16E", "1.0000001K"}) {
    CAPTURE(bad);
    vshare::Status st = ParseSize(bad, &v);
    CHECK_FALSE(st.ok());
    CHECK(st.code() == vshare::Status::Code::kInvalidArgument);
    CHECK(st.message().find("bad size") != std::string::npos);
  }
  CHECK(v == 7);  // untouched on failure
}

TEST_CASE("FormatSize") {
  CHECK(vshare::FormatSize(512) == "512 B");
  CHECK(vshare::FormatSize(256ull << 20) == "256 MiB");
  CHECK(vshare::FormatSize(1536ull << 20) == "1.5 GiB");
}
