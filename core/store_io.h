// Carrying out the root's store I/O (StoreOp, core/effects.h): the one
// implementation that both the network node's worker pool and the
// simulation run. Safe to call from any thread: a read fills slots the
// engine has marked busy, which nobody else touches until it is told the
// read is done.
#pragma once

#include "core/block_store.h"
#include "core/block_table.h"
#include "core/effects.h"

namespace vshare {

Status RunStoreOp(const StoreOp& op, BlockTable* table, BlockStore* store);

}  // namespace vshare
