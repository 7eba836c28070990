// Built against infokv as an engine would get it; runs one eviction on a dense cache.
#include <cstdio>
#include <vector>

#include <infokv/infokv.hpp>

int main() {
  const infokv::model_shape shape{.num_layers = 2, .num_q_heads = 2, .num_kv_heads = 1, .head_dim = 8};
  infokv::compress_config cfg;
  cfg.capacity = 64;
  cfg.sink_tokens = 1;
  cfg.recent_tokens = 2;
  cfg.decode_budget = infokv::budget::of_tokens(8);
  infokv::compressor comp(infokv::make_knorm(), cfg, shape);
  auto state = comp.make_state();
  std::vector<float> k(2 * 64 * 8), v(2 * 64 * 8);
  float* kl[2] = {k.data(), k.data() + 64 * 8};
  float* vl[2] = {v.data(), v.data() + 64 * 8};
  std::vector<int> len(1, 0);
  auto view = infokv::make_dense_view<float>(2, 1, 8, 64, infokv::stream_granularity::per_sequence, 1, kl, vl,
                                             len.data());
  for (int t = 0; t < 20; ++t) {
    for (int l = 0; l < 2; ++l)
      for (int d = 0; d < 8; ++d) kl[l][len[0] * 8 + d] = static_cast<float>((t * 7 + d) % 5);
    ++len[0];
    if (auto st = comp.compress(view, 0, state, {}); !st.ok()) {
      std::printf("compress failed: %.*s\n", static_cast<int>(st.message().size()), st.message().data());
      return 1;
    }
  }
  std::printf("infokv %d.%d.%d: %d tokens kept of 20\n", INFOKV_VERSION_MAJOR, INFOKV_VERSION_MINOR,
              INFOKV_VERSION_PATCH, len[0]);
  return len[0] == 8 ? 0 : 1;
}
