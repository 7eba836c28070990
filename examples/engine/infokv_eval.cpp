// SPDX-License-Identifier: Apache-2.0
// infokv_eval: quality of every policy on a real model and real text, teacher-forced and
// deterministic. Four scenarios (eval/):
//   prefill    a context of C tokens compressed once to a keep ratio, then NLL, KL(p_full || p)
//              and top-1 agreement on the next tokens (the paper's long-prefill setting)
//   decode     T tokens streamed in chunks of P, compressed after every chunk to a ratio of the
//              tokens seen (chunked teacher forcing = decoding with compression every P steps)
//   influence  a prefix compressed once by attention (InfoKV alpha = 1) or by entropy (alpha = 0),
//              then KL per 128-token chunk of what follows, as a function of distance
//   retrieval  a passage repeated after a gap (NLL on the repeat) and passkey retrieval over
//              depths (greedy: every answer token must be the arg max)
// The model runs each context once: every policy observes the same forward pass (a fan-out of
// sequence states), and at each compression point the cache and states are copied per policy
// and budget. Results go to CSV files in --out; scripts/eval_report.py makes the tables and plots.
#include <cstdio>
#include <exception>
#include <filesystem>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>

#include "cli.hpp"
#include "eval/evaluator.hpp"
#include "eval/harness.hpp"
#include "eval/keep_dump.hpp"
#include "eval/options.hpp"
#include "eval/results.hpp"
#include "gguf.hpp"
#include "llama_model.hpp"
#include "tokenizer.hpp"

[[noreturn]] void cli::usage_error(const std::string& msg) {
  std::fprintf(stderr, "error: %s\n", msg.c_str());
  std::fprintf(stderr, "%s", eval::usage_text);
  std::exit(1);
}

int main(int argc, char** argv) {
  const eval::options o = eval::parse(argc, argv);
  if (o.list_policies) {
    eval::write_policy_table(std::cout);
    return std::cout ? 0 : 1;
  }
  try {
    const auto t = cli::clock_type::now();
    std::filesystem::create_directories(o.out);
    const engine::gguf_file file = engine::gguf_file::open(o.model);
    const engine::bpe_tokenizer tok(file);
    const engine::llama_model model = engine::llama_model::load(file);
    eval::tokens ids;
    try {
      ids = tok.encode(cli::read_file(o.text));
    } catch (const engine::tokenizer_error& e) {
      throw std::runtime_error("'" + o.text + "' is not valid UTF-8: " + e.what());
    }
    // File names only: the log is meant to be committed with the results.
    std::printf("model: %s (%zu layers, context %zu); text: %s (%zu tokens)\n",
                std::filesystem::path(o.model).filename().string().c_str(), model.config.layers, model.config.context,
                std::filesystem::path(o.text).filename().string().c_str(), ids.size());
    std::unique_ptr<eval::keep_dump> dump;
    if (!o.dump_keep.empty())
      dump = std::make_unique<eval::keep_dump>(o.dump_keep, std::filesystem::path(o.model).filename().string(),
                                               std::filesystem::path(o.text).filename().string());
    eval::harness h(o, model, tok, dump.get());
    eval::evaluate(h, ids);
    std::printf("evaluation wall time: %.1f s\n", cli::seconds_since(t));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
