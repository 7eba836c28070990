// The main job until the real-model engine lands: a synthetic end-to-end decode on a paged cache
// with the SmolLM2-135M shape (30 layers, 9 query / 3 KV heads, head_dim 64, vocab 49,152).
// Every step appends one token's K/V and signals (random but reproducible) and calls compress();
// the demo prints what was kept, the evictions and the memory freed, for every policy.
//
// usage: infokv_synthetic_decode [steps=2048] [budget=256] [policy=all]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <infokv/infokv.hpp>

namespace {

const infokv::model_shape kShape{.num_layers = 30, .num_q_heads = 9, .num_kv_heads = 3, .head_dim = 64,
                                 .hidden_size = 576, .vocab_size = 49152};

template <class Policy>
int run(const Policy& policy, std::size_t steps, std::size_t budget, infokv::stream_granularity g) {
  infokv::compress_config cfg;
  cfg.granularity = g;
  cfg.capacity = budget + 64 + 1;
  cfg.decode_budget = infokv::budget::of_tokens(budget);
  cfg.slack = 64;
  infokv::compressor comp(policy, cfg, kShape);
  if (auto st = comp.can_implement(); !st.ok()) {
    std::printf("%s: %.*s\n", std::string(policy.name()).c_str(), static_cast<int>(st.message().size()), st.message().data());
    return 1;
  }
  auto state = comp.make_state();
  const std::size_t L = kShape.num_layers, H = kShape.num_kv_heads, D = kShape.head_dim, ps = 16;
  infokv::paged_kv_cache_params<infokv::bfloat16> p;
  p.num_layers = L, p.num_kv_heads = H, p.head_dim = D, p.page_size = ps, p.granularity = g, p.num_sequences = 1;
  const infokv::paged_kv_cache_view<infokv::bfloat16> probe(p);
  const std::size_t streams = probe.num_streams();
  const std::size_t pool_pages = streams * (cfg.capacity / ps + 2);
  std::vector<std::vector<infokv::bfloat16>> kpool(L), vpool(L);
  std::vector<infokv::bfloat16*> kp(L), vp(L);
  for (std::size_t l = 0; l < L; ++l) {
    kpool[l].resize(pool_pages * probe.page_elements());
    vpool[l].resize(pool_pages * probe.page_elements());
    kp[l] = kpool[l].data(), vp[l] = vpool[l].data();
  }
  std::vector<std::vector<std::int32_t>> free_pages(probe.num_domains());
  for (auto& f : free_pages)
    for (std::size_t i = pool_pages; i-- > 0;) f.push_back(static_cast<std::int32_t>(i));
  std::vector<std::vector<std::int32_t>> pages(streams);
  std::vector<std::size_t> len(streams, 0);
  std::vector<std::int32_t> indptr(streams + 1), indices(pool_pages * probe.num_domains()), last(streams);
  p.key_pools = kp.data(), p.value_pools = vp.data(), p.pool_pages = pool_pages;
  p.indptr = indptr.data(), p.indices = indices.data(), p.last_page_len = last.data();
  const infokv::paged_kv_cache_view<infokv::bfloat16> view(p);

  std::mt19937 rng(1);
  std::normal_distribution<float> N(0.0f, 1.0f);
  std::vector<float> q(L * kShape.num_q_heads * D), hidden(L * kShape.hidden_size), logits(kShape.vocab_size);
  std::size_t evictions = 0, freed = 0, peak_pages = 0;
  double seconds = 0.0;
  for (std::size_t t = 0; t < steps; ++t) {
    // Engine: append the token to every stream (a fresh page when the last one is full).
    for (std::size_t s = 0; s < streams; ++s) {
      if (len[s] % ps == 0) {
        auto& f = free_pages[view.stream_domain(s)];
        pages[s].push_back(f.back());
        f.pop_back();
      }
      const std::size_t page = static_cast<std::size_t>(pages[s].back()), slot = len[s] % ps;
      const std::size_t l0 = view.layers_per_stream() == 1 ? view.stream_layer(s) : 0;
      for (std::size_t l = l0; l < l0 + view.layers_per_stream(); ++l)
        for (std::size_t i = 0; i < view.heads_per_page() * D; ++i) {
          kpool[l][page * view.page_stride() + slot * view.heads_per_page() * D + i] = infokv::to_bfloat16(N(rng));
          vpool[l][page * view.page_stride() + slot * view.heads_per_page() * D + i] = infokv::to_bfloat16(N(rng));
        }
      ++len[s];
    }
    std::size_t in_use = 0;
    for (std::size_t s = 0, w = 0; s < streams; ++s) {
      indptr[s] = static_cast<std::int32_t>(w);
      for (auto pg : pages[s]) indices[w++] = pg;
      indptr[s + 1] = static_cast<std::int32_t>(w);
      last[s] = static_cast<std::int32_t>(len[s] - (pages[s].size() - 1) * ps);
      in_use += pages[s].size();
    }
    peak_pages = std::max(peak_pages, in_use);
    for (auto& x : q) x = N(rng);
    for (auto& x : hidden) x = N(rng);
    for (auto& x : logits) x = 2.0f * N(rng);
    infokv::step_signals sig;
    sig.queries = q, sig.hidden_states = hidden, sig.logits = logits;
    const auto t0 = std::chrono::steady_clock::now();
    if (auto st = comp.compress(view, 0, state, sig); !st.ok()) {
      std::printf("step %zu: %.*s\n", t, static_cast<int>(st.message().size()), st.message().data());
      return 1;
    }
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (state.last_event().evicted) {
      ++evictions;
      freed += state.last_event().pages_freed;
      for (const auto& f : state.last_plan().freed) free_pages[view.stream_domain(f.stream)].push_back(f.page);
      for (std::size_t s = 0; s < streams; ++s) {
        len[s] = view.stream_length(s);
        pages[s].resize(view.stream_num_pages(s));
      }
    }
  }
  const double page_kib = 2.0 * static_cast<double>(view.page_elements()) * 2.0 *
                          static_cast<double>(view.layers_per_stream()) / 1024.0;
  const std::size_t full_pages = streams * ((steps + ps - 1) / ps);
  std::printf("%-18s %-15s kept %5zu of %zu tokens per stream (oldest kept pos %d), %4zu evictions, %6zu pages freed, "
              "peak KV %8.1f KiB vs full %9.1f KiB (%.1fx), %.1f us/step in the library\n",
              std::string(policy.name()).c_str(), std::string(infokv::to_string(g)).c_str(), len[0], steps,
              state.positions(0)[0], evictions, freed, static_cast<double>(peak_pages) * page_kib,
              static_cast<double>(full_pages) * page_kib,
              static_cast<double>(full_pages) / static_cast<double>(peak_pages), 1e6 * seconds / static_cast<double>(steps));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t steps = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 2048;
  const std::size_t budget = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 256;
  const std::string which = argc > 3 ? argv[3] : "all";
  if (steps == 0 || budget < 68 || budget > 1u << 20) {
    std::printf("usage: %s [steps>0] [budget>=68] [policy]\n", argv[0]);
    return 2;
  }
  std::printf("synthetic decode, SmolLM2-135M shape (30 layers, 9/3 heads, head_dim 64, vocab 49152), bf16 pages "
              "of 16 tokens, budget %zu + slack 64, %zu steps\n", budget, steps);
  int rc = 0;
  const auto seq = infokv::stream_granularity::per_sequence, lay = infokv::stream_granularity::per_layer;
  if (which == "all" || which == "infokv") rc |= run(infokv::make_infokv(), steps, budget, lay);
  if (which == "all" || which == "infokv") rc |= run(infokv::make_infokv(), steps, budget, seq);
  if (which == "all" || which == "snapkv") rc |= run(infokv::make_snapkv(), steps, budget, lay);
  if (which == "all" || which == "streaming") rc |= run(infokv::make_streaming_llm(), steps, budget, seq);
  if (which == "all" || which == "knorm") rc |= run(infokv::make_knorm(), steps, budget, lay);
  if (which == "all" || which == "random") rc |= run(infokv::make_random(1), steps, budget, lay);
  return rc;
}
