// SPDX-License-Identifier: Apache-2.0
// Command-line helpers shared by infokv_engine and infokv_eval. Each program defines its own
// usage_error() (its usage text); a bad number is a usage error.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace cli {

/// Prints "error: msg" and the program's usage, exits 1. Defined by each program.
[[noreturn]] void usage_error(const std::string& msg);

inline std::size_t to_size(const std::string& s, const char* what) {
  char* end = nullptr;
  const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0') usage_error(std::string("bad number for ") + what + ": '" + s + "'");
  return static_cast<std::size_t>(v);
}

inline double to_double(const std::string& s, const char* what) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || !std::isfinite(v)) usage_error(std::string("bad number for ") + what + ": '" + s + "'");
  return v;
}

/// The non-empty items of a `sep`-separated list.
inline std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, sep);)
    if (!item.empty()) out.push_back(item);
  return out;
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

using clock_type = std::chrono::steady_clock;
inline double seconds_since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

}  // namespace cli
