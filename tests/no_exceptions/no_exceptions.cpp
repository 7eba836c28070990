// The library builds and runs with -fno-exceptions (it never throws; engines often build so).
#include <vector>

#include <infokv/infokv.hpp>

int main() {
  const infokv::model_shape shape{.num_layers = 1, .num_q_heads = 1, .num_kv_heads = 1, .head_dim = 8};
  infokv::compress_config cfg;
  cfg.capacity = 32;
  cfg.sink_tokens = 1;
  cfg.recent_tokens = 1;
  cfg.decode_budget = infokv::budget::of_tokens(4);
  infokv::compressor comp(infokv::make_knorm(), cfg, shape);
  auto state = comp.make_state();
  std::vector<float> k(32 * 8), v(32 * 8);
  float* kp[1] = {k.data()};
  float* vp[1] = {v.data()};
  std::vector<int> len{0};
  const auto view = infokv::make_dense_view<float>(1, 1, 8, 32, infokv::stream_granularity::per_sequence, 1, kp, vp,
                                                   len.data());
  for (int t = 0; t < 10; ++t) {
    k[static_cast<std::size_t>(len[0]) * 8] = static_cast<float>(t % 3);
    ++len[0];
    if (!comp.compress(view, 0, state, {}).ok()) return 1;
  }
  return len[0] == 4 ? 0 : 1;
}
