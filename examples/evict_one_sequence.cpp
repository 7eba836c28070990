// The README's integration example: an engine with a paged cache calls compress() every step.
#include <cstdio>
#include <vector>

#include <infokv/infokv.hpp>

int main() {
  const infokv::model_shape shape{.num_layers = 2, .num_q_heads = 4, .num_kv_heads = 2, .head_dim = 8};
  infokv::compress_config cfg;                 // one keep set per sequence, evict in place
  cfg.capacity = 256;                          // most tokens between evictions
  cfg.decode_budget = infokv::budget::of_tokens(96);
  cfg.slack = 32;                              // evict once 32 tokens over budget
  infokv::compressor comp(infokv::make_snapkv(), cfg, shape);
  infokv::sequence_state state = comp.make_state();

  // The engine's memory: 64 pages of 16 tokens per layer pool, one page table (CSR).
  const std::size_t page = 16 * 2 * 8;
  std::vector<float> k(2 * 64 * page), v(2 * 64 * page), queries(2 * 4 * 8, 0.1f);
  float* kp[2] = {k.data(), k.data() + 64 * page};
  float* vp[2] = {v.data(), v.data() + 64 * page};
  std::vector<int> indptr{0, 0}, indices(64), last{0};
  std::vector<int> free_pages;
  for (int p = 63; p >= 0; --p) free_pages.push_back(p);
  infokv::paged_kv_cache_params<float> p{.num_layers = 2, .num_kv_heads = 2, .head_dim = 8, .page_size = 16};
  p.num_sequences = 1, p.key_pools = kp, p.value_pools = vp, p.pool_pages = 64;
  p.indptr = indptr.data(), p.indices = indices.data(), p.last_page_len = last.data();
  const infokv::paged_kv_cache_view<float> view(p);

  for (int t = 0; t < 1000; ++t) {
    if (last[0] == 0 || last[0] == 16) {      // engine: grab a page, append the token's K/V
      indices[static_cast<std::size_t>(indptr[1]++)] = free_pages.back();
      free_pages.pop_back();
      last[0] = 0;
    }
    ++last[0];
    infokv::step_signals sig;                  // one new token: its post-RoPE queries
    sig.queries = queries;
    if (auto st = comp.compress(view, 0, state, sig); !st.ok()) {
      std::printf("compress: %.*s\n", static_cast<int>(st.message().size()), st.message().data());
      return 1;
    }
    for (const auto& f : state.last_plan().freed) free_pages.push_back(f.page);  // pages back to the engine
  }
  std::printf("1000 tokens decoded, %zu cached, %zu evictions, %zu pages free\n", view.stream_length(0),
              state.evictions(), free_pages.size());
  return 0;
}
