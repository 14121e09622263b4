#include "fuse/control.h"

#include <doctest/doctest.h>

#include "core/mem_store.h"
#include "core/volume.h"
#include "test/sim/inline_control.h"

using namespace vshare;

namespace {
struct TestNode {
  std::unique_ptr<MemStore> store = std::make_unique<MemStore>(64 * 512, 512);
  std::unique_ptr<InlineControl> control;
  Node node{"root"};
  TestNode() {
    ReplicaConfig cfg;
    cfg.volume_name = "v";
    cfg.volume_size = 64 * 512;
    cfg.block_size = 512;
    cfg.cache_bytes = 8 * 512;
    cfg.cache_ways = 2;
    control = std::make_unique<InlineControl>(cfg, store.get());
    auto v = std::make_unique<Volume>("v", control->table(), control.get());
    v->set_readahead_max(0);
    node.AddVolume(std::move(v));
  }
};
}  // namespace

TEST_CASE("flush writes dirty blocks to the store") {
  TestNode t;
  std::vector<std::byte> buf(512, std::byte{3});
  size_t done;
  REQUIRE(t.node.volumes()[0]->Write(0, buf, &done).ok());
  CHECK(t.store->writes() == 0);
  CHECK(ExecuteControl(t.node, "{\"cmd\":\"flush\"}\n").ok());
  CHECK(t.store->writes() == 1);
  CHECK(t.node.DirtyBlocks() == 0);
}

TEST_CASE("drop-cache empties the cache; reset-stats zeroes counters and last_error") {
  TestNode t;
  std::vector<std::byte> buf(512);
  size_t done;
  REQUIRE(t.node.volumes()[0]->Read(0, buf, &done).ok());
  CHECK(t.node.volumes()[0]->stats().cache.used_blocks == 1);
  CHECK(ExecuteControl(t.node, R"({"cmd":"drop-cache"})").ok());
  CHECK(t.node.volumes()[0]->stats().cache.used_blocks == 0);
  CHECK_FALSE(ExecuteControl(t.node, "nonsense").ok());
  CHECK_FALSE(t.node.last_error().empty());
  CHECK(ExecuteControl(t.node, R"({"cmd":"reset-stats"})").ok());
  CHECK(t.node.volumes()[0]->stats().reads == 0);
  CHECK(t.node.last_error().empty());
}

TEST_CASE("bad commands are refused with a reason recorded as last_error") {
  TestNode t;
  struct Case {
    const char* text;
    const char* reason;
  };
  for (const Case& c : {Case{"nonsense", "not valid JSON"}, Case{"[1,2]", "expected a JSON object"},
                        Case{"{}", "missing string field"}, Case{R"({"cmd":5})", "missing string field"},
                        Case{R"({"cmd":"explode"})", "unknown command 'explode'"},
                        Case{R"({"cmd":"flush","now":true})", "takes no field 'now'"}}) {
    CAPTURE(c.text);
    Status st = ExecuteControl(t.node, c.text);
    CHECK(st.code() == Status::Code::kInvalidArgument);
    CHECK(st.message().find(c.reason) != std::string::npos);
    CHECK(t.node.last_error() == st.message());
  }
}
