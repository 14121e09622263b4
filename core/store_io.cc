#include "core/store_io.h"

#include <vector>

namespace vshare {

Status RunStoreOp(const StoreOp& op, BlockTable* table, BlockStore* store) {
  switch (op.kind) {
    case StoreOp::Kind::kSync:
      return store->Sync();
    case StoreOp::Kind::kWrite:
      return store->WriteBlocks(op.first, std::as_bytes(op.data.span()));
    case StoreOp::Kind::kRead: {
      const uint32_t bs = table->block_size();
      std::vector<std::span<std::byte>> outs(op.count);
      std::vector<std::byte> scratch;  // a table without bytes reads into nothing kept
      for (uint32_t i = 0; i < op.count; ++i) {
        BlockTable::Locked set = table->Lock(op.first + i);
        BlockTable::Slot* s = set.Find(op.first + i);
        if (!s || !s->busy) return Status::IOError("internal error: a store read into a slot not waiting for it");
        if (s->data) {
          outs[i] = {reinterpret_cast<std::byte*>(s->data), bs};
        } else {
          if (scratch.empty()) scratch.resize(bs);
          outs[i] = {scratch.data(), bs};
        }
      }
      return store->ReadBlocks(op.first, outs);
    }
  }
  return Status::Ok();
}

}  // namespace vshare
