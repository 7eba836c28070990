// SPDX-License-Identifier: Apache-2.0
// Library state per sequence against the KV cache it keeps: for the Llama-3.1-8B and SmolLM2
// shapes, every built-in policy and the granularities the evaluation uses, the bytes of one
// sequence_state (compressor::make_state for `capacity` tokens per stream) beside the bytes of
// the K and V rows that a budget of `budget` tokens keeps (bf16). Prints a Markdown table with
// the state's largest parts. No timing: memory only.
//   usage: infokv_state_memory [budget tokens, default 2048] [tokens between evictions, default 128]
#include <cstdio>
#include <cstdlib>
#include <string>

#include <infokv/infokv.hpp>

namespace {

struct model {
  const char* name;
  infokv::model_shape shape;
};
constexpr model kModels[] = {
    {"Llama-3.1-8B", {.num_layers = 32, .num_q_heads = 32, .num_kv_heads = 8, .head_dim = 128, .hidden_size = 4096,
                      .vocab_size = 128256}},
    {"SmolLM2-135M", {.num_layers = 30, .num_q_heads = 9, .num_kv_heads = 3, .head_dim = 64, .hidden_size = 576,
                      .vocab_size = 49152}},
};

double mib(std::size_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

template <class Policy>
void row(const model& m, const Policy& policy, infokv::stream_granularity g, std::size_t budget, std::size_t capacity) {
  infokv::compress_config cfg;
  cfg.granularity = g;
  cfg.decode_budget = infokv::budget::of_tokens(budget);
  cfg.capacity = capacity;
  cfg.rope = {500000.0, infokv::rope_pairing::rotate_half};
  if (policy.preferred_schedule == infokv::budget_schedule::infokv_adaptive ||
      policy.preferred_schedule == infokv::budget_schedule::pyramid)
    if (g == infokv::stream_granularity::per_sequence) return;
  const infokv::compressor comp(policy, cfg, m.shape);
  if (!comp.can_implement().ok()) {
    std::printf("| %s | %s | %s | (configuration refused) |||||\n", m.name, std::string(policy.name()).c_str(),
                std::string(infokv::to_string(g)).c_str());
    return;
  }
  const infokv::sequence_state st = comp.make_state();
  const auto& d = st.data();
  const std::size_t kv_kept = budget * m.shape.num_layers * m.shape.num_kv_heads * m.shape.head_dim * 2 * 2;
  const std::size_t per_token = (d.positions.capacity() + d.entropy.capacity() + d.evolution.capacity() +
                                 d.accumulated.capacity()) * 4;
  const std::size_t ring = d.window_q.capacity() * 4 + (d.query_sum.capacity() + d.query_outer.capacity()) * 8;
  const std::size_t scratch = d.scratch.capacity() * 4;
  const std::size_t total = st.memory_bytes();
  std::printf("| %s | %s | %s | %.2f | %.2f | %.3f | %.2f | %.2f | %.2f | %.2f |\n", m.name,
              std::string(policy.name()).c_str(), std::string(infokv::to_string(g)).c_str(), mib(kv_kept), mib(total),
              static_cast<double>(total) / static_cast<double>(kv_kept), mib(per_token), mib(ring), mib(scratch),
              mib(total - per_token - ring - scratch));
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t budget = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 2048;
  const std::size_t interval = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 128;
  if (budget < 128 || budget > (1u << 20) || interval == 0 || interval > (1u << 20)) {
    std::fprintf(stderr, "usage: %s [budget tokens >= 128] [tokens between evictions]\n", argv[0]);
    return 2;
  }
  const std::size_t capacity = budget + interval;  // a stream grows by `interval` between evictions
  std::printf("Budget %zu tokens, capacity %zu tokens per stream (budget + %zu between evictions); KV kept = "
              "budget x layers x KV heads x head_dim x (K, V) x 2 bytes (bf16). MiB.\n\n",
              budget, capacity, interval);
  std::printf("| model | policy | keep sets | KV kept | state | state / KV | per-token state | query ring and "
              "statistics | scorer scratch | eviction and plan buffers |\n|---|---|---|---|---|---|---|---|---|---|\n");
  using g = infokv::stream_granularity;
  for (const auto& m : kModels) {
    for (auto gran : {g::per_layer, g::per_layer_head}) {
      row(m, infokv::make_infokv(), gran, budget, capacity);
      row(m, infokv::make_snapkv(), gran, budget, capacity);
      row(m, infokv::make_rkv(), gran, budget, capacity);
      row(m, infokv::make_h2o(), gran, budget, capacity);
      row(m, infokv::make_tova(), gran, budget, capacity);
      row(m, infokv::make_expected_attention(), gran, budget, capacity);
      row(m, infokv::make_knorm(), gran, budget, capacity);
      row(m, infokv::make_streaming_llm(), gran, budget, capacity);
    }
  }
  return 0;
}
