#include "core/size.h"

#include <cctype>
#include <cstdio>

namespace vshare {

namespace {

__extension__ typedef unsigned __int128 u128;

// Returns the power of 1024 for a suffix, or -1 when it is not one we know.
int SuffixPower(std::string_view s) {
  std::string up;
  for (char c : s) up.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  if (up.empty() || up == "B") return 0;
  static constexpr std::string_view kLetters = "KMGTPE";
  if (up.size() > 3) return -1;
  size_t pos = kLetters.find(up[0]);
  if (pos == std::string_view::npos) return -1;
  std::string_view rest = std::string_view(up).substr(1);
  if (!rest.empty() && rest != "B" && rest != "IB") return -1;
  return static_cast<int>(pos) + 1;
}

}  // namespace

Status ParseSize(std::string_view text, uint64_t* bytes) {
  const std::string shown(text);
  auto bad = [&](const char* why) {
    return Status::InvalidArgument("bad size '" + shown + "': " + why +
                                   " (examples: 4096, 256M, 10G)");
  };
  size_t i = 0;
  while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
  if (i == text.size()) return bad("empty");
  if (text[i] == '-') return bad("negative");
  if (!std::isdigit(static_cast<unsigned char>(text[i]))) return bad("not a number");

  // Whole part, then an optional fraction kept as numerator/denominator.
  u128 whole = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
    whole = whole * 10 + static_cast<unsigned>(text[i] - '0');
    if (whole > UINT64_MAX) return bad("too large");
    ++i;
  }
  u128 frac = 0, denom = 1;
  if (i < text.size() && text[i] == '.') {
    ++i;
    if (i == text.size() || !std::isdigit(static_cast<unsigned char>(text[i])))
      return bad("digits expected after '.'");
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
      if (denom > UINT64_MAX) return bad("too many decimals");
      frac = frac * 10 + static_cast<unsigned>(text[i] - '0');
      denom *= 10;
      ++i;
    }
  }
  std::string_view suffix = text.substr(i);
  while (!suffix.empty() && std::isspace(static_cast<unsigned char>(suffix.front()))) suffix.remove_prefix(1);
  while (!suffix.empty() && std::isspace(static_cast<unsigned char>(suffix.back()))) suffix.remove_suffix(1);
  int power = SuffixPower(suffix);
  if (power < 0) return bad("unknown unit (use K, M, G, T, P or E)");

  u128 mult = 1;
  for (int p = 0; p < power; ++p) mult *= 1024;
  u128 total = whole * mult;
  if (total > UINT64_MAX) return bad("too large");
  u128 frac_bytes = frac * mult;
  if (frac_bytes % denom != 0) return bad("not a whole number of bytes");
  total += frac_bytes / denom;
  if (total > UINT64_MAX) return bad("too large");
  if (total == 0) return bad("must be greater than zero");
  *bytes = static_cast<uint64_t>(total);
  return Status::Ok();
}

std::string FormatSize(uint64_t bytes) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int unit = 0;
  double v = static_cast<double>(bytes);
  while (v >= 1024.0 && unit < 6) {
    v /= 1024.0;
    ++unit;
  }
  char buf[32];
  if (unit == 0)
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  else if (v == static_cast<double>(static_cast<uint64_t>(v)))
    std::snprintf(buf, sizeof buf, "%.0f %s", v, kUnits[unit]);
  else
    std::snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[unit]);
  return buf;
}

}  // namespace vshare
