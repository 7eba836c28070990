// SPDX-License-Identifier: Apache-2.0
// Runs exactly one compression event (InfoKV, SmolLM2-135M shape, per-layer keep sets, bf16
// pages of 16, keep 25%) on T tokens (argument, default 4096), so that
//   valgrind --tool=callgrind --toggle-collect='*infokv_compression_event*' ./infokv_event_once 4096
// counts the instructions of the event alone: a timer-free regression measure.
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <infokv/infokv.hpp>

namespace {
// Kept out of line so that callgrind's --toggle-collect can find the event by name.
template <class Comp, class View>
[[gnu::noinline]] infokv::status infokv_compression_event(const Comp& comp, const View& view,
                                                          infokv::sequence_state& st) {
  infokv::step_signals none;
  none.num_tokens = 0;
  return comp.compress_prefill(view, 0, st, none);
}
}  // namespace

int main(int argc, char** argv) {
  const std::size_t T = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 4096;
  if (T < 256 || T % 256 != 0 || T > (1u << 20)) {
    std::fprintf(stderr, "usage: %s [tokens: a multiple of 256]\n", argv[0]);
    return 2;
  }
  const infokv::model_shape m{.num_layers = 30, .num_q_heads = 9, .num_kv_heads = 3, .head_dim = 64,
                              .hidden_size = 576, .vocab_size = 49152};
  const std::size_t L = m.num_layers, pages = T / 16, elems = pages * 16 * m.num_kv_heads * m.head_dim;
  infokv::compress_config cfg;
  cfg.granularity = infokv::stream_granularity::per_layer;
  cfg.capacity = T;
  cfg.prefill_budget = infokv::budget::of_ratio(0.25);
  const infokv::compressor comp(infokv::make_infokv(), cfg, m);
  std::vector<std::vector<infokv::bfloat16>> k(L, std::vector<infokv::bfloat16>(elems)), v = k;
  std::vector<infokv::bfloat16*> kp(L), vp(L);
  for (std::size_t l = 0; l < L; ++l) {
    for (std::size_t i = 0; i < elems; ++i)
      k[l][i] = infokv::to_bfloat16(static_cast<float>(infokv::detail::mix64(l * elems + i) >> 40) / 8388608.0f - 1.0f);
    kp[l] = k[l].data();
    vp[l] = v[l].data();
  }
  std::vector<std::int32_t> indptr(L + 1), indices(L * pages), last(L, 16);
  for (std::size_t l = 0; l <= L; ++l) indptr[l] = static_cast<std::int32_t>(l * pages);
  for (std::size_t l = 0; l < L; ++l)
    for (std::size_t i = 0; i < pages; ++i) indices[l * pages + i] = static_cast<std::int32_t>((i * 7919) % pages);
  infokv::paged_kv_cache_params<infokv::bfloat16> p;
  p.num_layers = L, p.num_kv_heads = m.num_kv_heads, p.head_dim = m.head_dim, p.page_size = 16;
  p.granularity = cfg.granularity, p.num_sequences = 1, p.key_pools = kp.data(), p.value_pools = vp.data();
  p.pool_pages = pages, p.indptr = indptr.data(), p.indices = indices.data(), p.last_page_len = last.data();
  const infokv::paged_kv_cache_view<infokv::bfloat16> view(p);
  auto st = comp.make_state();
  // The prompt's signals: the last 64 queries, hidden states and entropies for every token.
  std::vector<float> q(L * T * m.num_q_heads * m.head_dim), h(L * T * m.hidden_size), ent(T);
  for (std::size_t i = 0; i < q.size(); ++i) q[i] = static_cast<float>(infokv::detail::mix64(i + 1) >> 40) / 8388608.0f - 1.0f;
  for (std::size_t i = 0; i < h.size(); ++i) h[i] = static_cast<float>(infokv::detail::mix64(i + 7) >> 40) / 8388608.0f - 1.0f;
  for (std::size_t i = 0; i < T; ++i) ent[i] = static_cast<float>(infokv::detail::mix64(i + 9) >> 40) / 2097152.0f;
  infokv::step_signals sig;
  sig.num_tokens = T, sig.queries = q, sig.hidden_states = h, sig.next_token_entropy = ent;
  if (!comp.observe(view, 0, st, sig).ok()) return 1;
  const infokv::status rc = infokv_compression_event(comp, view, st);
  std::printf("one compression event: %s, %zu -> %zu tokens, %zu pages freed\n", rc.ok() ? "ok" : "failed",
              st.last_event().tokens_before, st.last_event().tokens_after, st.last_event().pages_freed);
  return rc.ok() ? 0 : 1;
}
