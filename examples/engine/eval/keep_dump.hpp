// SPDX-License-Identifier: Apache-2.0
// Keep sets and token ids for outside references (scripts/reference/kvpress_parity.py and
// scripts/compare_keep_sets.sh read them): one JSON object per compressed prefill run in
// keep_sets.jsonl, and the ids of each window in tokens.json (window 0) or tokens_window<W>.json.
#pragma once

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <infokv/infokv.hpp>

namespace eval {

class keep_dump {
 public:
  keep_dump(const std::filesystem::path& dir, std::string model, std::string text)
      : dir_(dir), model_(std::move(model)), text_(std::move(text)) {
    std::filesystem::create_directories(dir_);
    out_.open(dir_ / "keep_sets.jsonl");
    if (!out_) throw std::runtime_error("cannot write '" + (dir_ / "keep_sets.jsonl").string() + "'");
  }
  void tokens(std::size_t window, std::size_t offset, const std::vector<std::int32_t>& ids) {
    const auto path = dir_ / (window == 0 ? std::string("tokens.json") : "tokens_window" + std::to_string(window) + ".json");
    std::ofstream f(path);
    f << "{\"model\": " << quote(model_) << ", \"text\": " << quote(text_) << ", \"window\": " << window
      << ", \"offset\": " << offset << ", \"ids\": [";
    for (std::size_t i = 0; i < ids.size(); ++i) f << (i ? "," : "") << ids[i];
    f << "]}\n";
    if (!f) throw std::runtime_error("cannot write '" + path.string() + "'");
  }
  /// `streams`: the sorted positions each stream kept.
  void keep_set(std::size_t window, std::size_t context, double budget, const std::string& policy,
                infokv::stream_granularity g, std::size_t layers, std::size_t kv_heads,
                const std::vector<std::vector<std::int32_t>>& streams) {
    char b[40];
    std::snprintf(b, sizeof b, "%.12g", budget);
    out_ << "{\"scenario\": \"prefill\", \"window\": " << window << ", \"context\": " << context << ", \"budget\": " << b
         << ", \"policy\": " << quote(policy) << ", \"granularity\": " << quote(std::string(infokv::to_string(g)))
         << ", \"num_layers\": " << layers << ", \"num_kv_heads\": " << kv_heads << ", \"streams\": [";
    for (std::size_t s = 0; s < streams.size(); ++s) {
      out_ << (s ? ", [" : "[");
      for (std::size_t i = 0; i < streams[s].size(); ++i) out_ << (i ? "," : "") << streams[s][i];
      out_ << "]";
    }
    out_ << "]}\n";
    out_.flush();
  }

 private:
  static std::string quote(const std::string& x) {
    std::string q = "\"";
    for (char c : x) {
      if (c == '"' || c == '\\') q += '\\';
      q += c;
    }
    return q + "\"";
  }
  std::filesystem::path dir_;
  std::string model_, text_;
  std::ofstream out_;
};

}  // namespace eval
