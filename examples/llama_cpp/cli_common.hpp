// SPDX-License-Identifier: Apache-2.0
// What the two llama.cpp example programs (llama-infokv, llama-infokv-reason) share on their
// command lines and when they load a model: counts, comma lists, the quiet logger and the model
// loaded the one way both must load it.
#pragma once

#include <cstddef>
#include <cstdio>
#include <exception>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "llama.h"

namespace llama_infokv {

/// `v` as a non-negative integer, the whole string ("12x", "-1" and "" are not counts).
inline std::optional<std::size_t> parse_count(const std::string& v) {
  try {
    std::size_t used = 0;
    const long long x = std::stoll(v, &used);
    if (used != v.size() || x < 0) return std::nullopt;
    return static_cast<std::size_t>(x);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

/// The items of a comma-separated list, empty ones kept, so that a caller can reject "a,,b".
inline std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(item);
  if (!s.empty() && s.back() == ',') out.emplace_back();
  return out;
}

struct model_deleter {
  void operator()(llama_model* m) const noexcept { llama_model_free(m); }
};
using model_ptr = std::unique_ptr<llama_model, model_deleter>;

/// llama.cpp's log, errors only: the programs print their own results on stdout.
inline void quiet_log(ggml_log_level level, const char* text, void*) {
  if (level == GGML_LOG_LEVEL_ERROR) std::fputs(text, stderr);
}

/// Initialises the backend and loads `path`; null when it is not a loadable GGUF model.
inline model_ptr load_model(const std::string& path) {
  llama_log_set(quiet_log, nullptr);
  llama_backend_init();
  llama_model_params mp = llama_model_default_params();
  // llama.cpp's repacked (AMX / extra buffer type) weight path crashes on batched prompts on AMX
  // CPUs with GGML_NATIVE; the plain CPU path computes the same model (and on the AVX2 machine
  // where it was first measured it was also the faster one: 2K-token prefill of SmolLM2 at 106
  // tok/s against 61).
  mp.use_extra_bufts = false;
  return model_ptr(llama_model_load_from_file(path.c_str(), mp));
}

}  // namespace llama_infokv
