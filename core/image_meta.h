// What vshare remembers about an image file, kept with the file itself as an
// extended attribute so the image stays a plain raw disk image that any tool
// can read. Format: doc/formats.md.
#pragma once

#include <cstdint>
#include <string>

#include "core/status.h"

namespace vshare {

inline constexpr uint32_t kDefaultBlockSize = 4096;
inline constexpr const char* kBlockSizeXattr = "user.vshare.block_size";

// A block size must be a power of two from 512 bytes to 1 MiB.
Status ValidateBlockSize(uint64_t block_size);

// Records `block_size` on the image. Fails with kUnsupported when the file
// system does not keep user extended attributes.
Status WriteImageBlockSize(const std::string& path, uint32_t block_size);
// The recorded block size, or kDefaultBlockSize when none is recorded.
// Fails only when a recorded value is malformed.
Status ReadImageBlockSize(const std::string& path, uint32_t* block_size);

}  // namespace vshare
