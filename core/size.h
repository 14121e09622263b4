// Parsing and printing of byte sizes as users write them: "4096", "256M",
// "10G", "1.5T", "512KiB". Suffixes are binary (K = 1024).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/status.h"

namespace vshare {

// Parses `text` into *bytes. Rejects empty input, negative or zero sizes,
// unknown suffixes, trailing junk, fractions that do not land on a whole
// byte, and values that overflow 64 bits.
Status ParseSize(std::string_view text, uint64_t* bytes);

// "256 MiB", "1.5 GiB", "4096 B": for messages and tables.
std::string FormatSize(uint64_t bytes);

}  // namespace vshare
