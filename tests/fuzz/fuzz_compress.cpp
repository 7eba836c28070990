// SPDX-License-Identifier: Apache-2.0
// libFuzzer target over compress(), observe() and compress_prefill(): the input chooses the
// model shape, granularity, layout, element type, page size, pool, configuration and policy,
// then drives a small engine through steps that append tokens and call the library, with
// arbitrary signal values (NaN and infinities included) and, now and then, a corrupted page
// table or a signal span of the wrong size. It checks the library's contract:
//  * a call that returns an error leaves pools, page table, positions and state unchanged;
//  * a call that succeeds leaves a valid page table whose streams match the state's lengths.
// Memory errors and undefined behaviour are caught by the sanitizers the target is built with.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <infokv/infokv.hpp>

namespace {

#define FUZZ_CHECK(cond)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                            \
    }                                                                          \
  } while (false)

float fuzz_float(FuzzedDataProvider& fdp) {
  switch (fdp.ConsumeIntegralInRange<int>(0, 15)) {
    case 0: return std::numeric_limits<float>::quiet_NaN();
    case 1: return std::numeric_limits<float>::infinity();
    case 2: return -std::numeric_limits<float>::infinity();
    case 3: return 1e30f;
    case 4: return -1e30f;
    case 5: return 1e-40f;  // subnormal
    default: return fdp.ConsumeFloatingPointInRange<float>(-4.0f, 4.0f);
  }
}

template <class T, class Layout>
struct engine_cache {
  using view_type = infokv::paged_kv_cache_view<T, Layout>;
  infokv::paged_kv_cache_params<T> p;
  std::vector<std::vector<T>> k, v;
  std::vector<T*> kp, vp;
  std::vector<std::int32_t> indptr, indices, last, positions;
  std::vector<std::vector<std::int32_t>> pages;  // per stream
  std::vector<std::vector<std::int32_t>> free;   // per domain
  std::vector<std::size_t> len;

  view_type view() {
    p.key_pools = kp.data();
    p.value_pools = vp.data();
    p.indptr = indptr.data();
    p.indices = indices.data();
    p.last_page_len = last.data();
    p.positions = positions.data();
    return view_type(p);
  }
  void rebuild() {
    const std::size_t S = pages.size();
    indptr.assign(S + 1, 0);
    indices.assign(indices.size(), 0);
    std::size_t n = 0;
    for (std::size_t s = 0; s < S; ++s) {
      indptr[s] = static_cast<std::int32_t>(n);
      for (auto pg : pages[s]) indices[n++] = pg;
      last[s] = len[s] == 0 ? 0 : static_cast<std::int32_t>(len[s] - (pages[s].size() - 1) * p.page_size);
    }
    indptr[S] = static_cast<std::int32_t>(n);
  }
  // Reads the table back after the library compacted it; freed pages return to the lists.
  void sync() {
    const view_type vw = view();
    for (std::size_t s = 0; s < pages.size(); ++s) {
      const std::size_t np = vw.stream_num_pages(s);
      len[s] = vw.stream_length(s);
      for (std::size_t i = np; i < pages[s].size(); ++i) free[vw.stream_domain(s)].push_back(pages[s][i]);
      pages[s].resize(np);
    }
    rebuild();
  }
  /// After apply_mode::reindex: the survivors' pages are wherever the library left them in the
  /// table, and the freed pages are the plan's.
  void sync_reindexed(const infokv::eviction_plan& plan) {
    const view_type vw = view();
    for (std::size_t s = 0; s < pages.size(); ++s) {
      len[s] = vw.stream_length(s);
      pages[s].assign(indices.begin() + indptr[s], indices.begin() + indptr[s + 1]);
    }
    for (const auto& f : plan.freed) free[vw.stream_domain(f.stream)].push_back(f.page);
    rebuild();
  }
};

template <class T, class Layout, class Policy>
void drive(FuzzedDataProvider& fdp, const Policy& policy) {
  const infokv::model_shape shape{.num_layers = fdp.ConsumeIntegralInRange<std::size_t>(1, 3),
                                  .num_q_heads = 0,
                                  .num_kv_heads = fdp.ConsumeIntegralInRange<std::size_t>(1, 2),
                                  .head_dim = fdp.ConsumeIntegralInRange<std::size_t>(1, 9),
                                  .hidden_size = fdp.ConsumeIntegralInRange<std::size_t>(1, 6),
                                  .vocab_size = fdp.ConsumeIntegralInRange<std::size_t>(1, 40)};
  infokv::model_shape sh = shape;
  sh.num_q_heads = sh.num_kv_heads * fdp.ConsumeIntegralInRange<std::size_t>(1, 3);
  infokv::compress_config cfg;
  cfg.granularity = static_cast<infokv::stream_granularity>(fdp.ConsumeIntegralInRange<int>(0, 2));
  cfg.capacity = fdp.ConsumeIntegralInRange<std::size_t>(0, 80);
  cfg.decode_budget = fdp.ConsumeBool() ? infokv::budget::of_tokens(fdp.ConsumeIntegralInRange<std::size_t>(0, 40))
                                        : infokv::budget::of_ratio(fdp.ConsumeFloatingPointInRange<double>(-0.2, 1.2));
  cfg.prefill_budget = fdp.ConsumeBool() ? infokv::budget::of_tokens(fdp.ConsumeIntegralInRange<std::size_t>(0, 40))
                                         : infokv::budget::of_ratio(fdp.ConsumeFloatingPointInRange<double>(0.0, 1.0));
  cfg.sink_tokens = fdp.ConsumeIntegralInRange<std::size_t>(0, 6);
  cfg.recent_tokens = fdp.ConsumeIntegralInRange<std::size_t>(0, 12);
  cfg.slack = fdp.ConsumeIntegralInRange<std::size_t>(0, 6);
  cfg.interval = fdp.ConsumeIntegralInRange<std::size_t>(0, 3);
  cfg.schedule.kind = static_cast<infokv::budget_schedule>(fdp.ConsumeIntegralInRange<int>(0, 4));
  cfg.apply = static_cast<infokv::apply_mode>(fdp.ConsumeIntegralInRange<int>(0, 2));  // reindex needs page_size 1
  // RoPE: stated with either pairing and a theta from 1e2 to 1e7, or left unstated (a policy
  // that rotates must then refuse through can_implement).
  switch (fdp.ConsumeIntegralInRange<int>(0, 2)) {
    case 1: cfg.rope = {std::pow(10.0, fdp.ConsumeFloatingPointInRange<double>(2.0, 7.0)), infokv::rope_pairing::rotate_half}; break;
    case 2: cfg.rope = {std::pow(10.0, fdp.ConsumeFloatingPointInRange<double>(2.0, 7.0)), infokv::rope_pairing::adjacent}; break;
    default: break;
  }
  const infokv::compressor<Policy> comp(policy, cfg, sh);
  if (!comp.can_implement().ok()) return;
  infokv::sequence_state state = comp.make_state();

  engine_cache<T, Layout> c;
  c.p.num_layers = sh.num_layers;
  c.p.num_kv_heads = sh.num_kv_heads;
  c.p.head_dim = sh.head_dim;
  c.p.page_size = fdp.ConsumeIntegralInRange<std::size_t>(1, 8);
  c.p.granularity = cfg.granularity;
  c.p.num_sequences = fdp.ConsumeIntegralInRange<std::size_t>(1, 2);
  const infokv::paged_kv_cache_view<T, Layout> probe(c.p);
  const std::size_t S = probe.num_streams(), domains = probe.num_domains();
  c.p.pool_pages = fdp.ConsumeIntegralInRange<std::size_t>(1, 48);
  c.p.page_stride = fdp.ConsumeBool() ? 0 : probe.page_elements() + fdp.ConsumeIntegralInRange<std::size_t>(0, 3);
  const std::size_t stride = c.p.page_stride == 0 ? probe.page_elements() : c.p.page_stride;
  for (std::size_t l = 0; l < sh.num_layers; ++l) {
    c.k.emplace_back(c.p.pool_pages * stride, infokv::from_float<T>(0.5f));
    c.v.emplace_back(c.p.pool_pages * stride, infokv::from_float<T>(-0.5f));
    c.kp.push_back(c.k.back().data());
    c.vp.push_back(c.v.back().data());
  }
  c.pages.assign(S, {});
  c.len.assign(S, 0);
  c.last.assign(S, 0);
  c.free.assign(domains, {});
  for (auto& f : c.free)
    for (std::size_t i = c.p.pool_pages; i-- > 0;) f.push_back(static_cast<std::int32_t>(i));
  c.indices.assign(domains * c.p.pool_pages + 8, 0);  // room for every page once, plus garbage slack
  c.positions.assign(domains * c.p.pool_pages * c.p.page_size, -1);
  c.rebuild();
  std::vector<std::int32_t> next_pos(c.p.num_sequences, 0);
  std::vector<float> q, pq, hs, lg, att;

  const int steps = fdp.ConsumeIntegralInRange<int>(1, 24);
  for (int step = 0; step < steps && fdp.remaining_bytes() > 0; ++step) {
    const std::size_t b = fdp.ConsumeIntegralInRange<std::size_t>(0, c.p.num_sequences - 1);
    const std::size_t n = fdp.ConsumeIntegralInRange<std::size_t>(1, 4);
    auto view = c.view();
    // Append n tokens to every stream of sequence b (stop at an exhausted pool: the engine's limit).
    bool appended = true;
    const std::size_t s0 = b * view.streams_per_sequence(), s1 = s0 + view.streams_per_sequence();
    for (std::size_t s = s0; s < s1 && appended; ++s)
      for (std::size_t j = 0; j < n; ++j) {
        const std::size_t slot = c.len[s];
        if (slot % c.p.page_size == 0) {
          auto& fl = c.free[view.stream_domain(s)];
          if (fl.empty()) {
            appended = false;
            break;
          }
          c.pages[s].push_back(fl.back());
          fl.pop_back();
        }
        const auto page = static_cast<std::size_t>(c.pages[s][slot / c.p.page_size]);
        c.positions[(view.stream_domain(s) * c.p.pool_pages + page) * c.p.page_size + slot % c.p.page_size] =
            next_pos[b] + static_cast<std::int32_t>(j);
        const std::size_t l0 = view.layers_per_stream() == 1 ? view.stream_layer(s) : 0;
        for (std::size_t l = l0; l < l0 + view.layers_per_stream(); ++l)
          for (std::size_t h = 0; h < view.heads_per_page(); ++h)
            for (std::size_t d = 0; d < sh.head_dim; ++d) {
              const std::size_t off =
                  page * stride + Layout::offset(slot % c.p.page_size, h, c.p.page_size, view.heads_per_page(), sh.head_dim) + d;
              c.k[l][off] = infokv::from_float<T>(fuzz_float(fdp));
              c.v[l][off] = infokv::from_float<T>(fuzz_float(fdp));
            }
        ++c.len[s];
      }
    if (!appended) return;
    c.rebuild();
    next_pos[b] += static_cast<std::int32_t>(n);
    // Signals of the right sizes, or (sometimes) one of them too short.
    const std::size_t L = sh.num_layers, Hq = sh.num_q_heads, D = sh.head_dim;
    std::size_t stride_att = 0;
    for (std::size_t s = s0; s < s1; ++s) stride_att = std::max(stride_att, c.len[s]);
    const int shorten = fdp.ConsumeIntegralInRange<int>(0, 12);
    const auto fill = [&](std::vector<float>& x, std::size_t size, int which) {
      x.resize(shorten == which && size > 0 ? size - 1 : size);
      for (auto& e : x) e = fdp.ConsumeIntegralInRange<int>(0, 9) == 0 ? fuzz_float(fdp) : fdp.ConsumeFloatingPointInRange<float>(-2.0f, 2.0f);
    };
    fill(q, L * n * Hq * D, 1);
    fill(pq, L * n * Hq * D, 2);
    fill(hs, L * n * sh.hidden_size, 3);
    fill(lg, n * sh.vocab_size, 4);
    fill(att, L * n * Hq * stride_att, 5);
    infokv::step_signals sig;
    sig.num_tokens = shorten == 6 ? n + 1 : n;
    sig.queries = q;
    sig.prerope_queries = pq;
    sig.hidden_states = hs;
    sig.logits = lg;
    sig.attention = att;
    sig.attention_stride = stride_att;
    // Sometimes corrupt the table the engine hands over.
    const bool corrupted = fdp.ConsumeIntegralInRange<int>(0, 7) == 0;
    if (corrupted) {
      const std::size_t s = fdp.ConsumeIntegralInRange<std::size_t>(0, S - 1);
      switch (fdp.ConsumeIntegralInRange<int>(0, 3)) {
        case 0: c.last[s] = fdp.ConsumeIntegralInRange<std::int32_t>(-2, static_cast<std::int32_t>(c.p.page_size) + 2); break;
        case 1: c.indptr[s + 1] = std::clamp<std::int32_t>(c.indptr[s + 1] + fdp.ConsumeIntegralInRange<std::int32_t>(-2, 2), -2,
                                                          static_cast<std::int32_t>(c.indices.size()) - 1);
                break;
        case 2:
          if (c.indptr[S] > 0)
            c.indices[fdp.ConsumeIntegralInRange<std::size_t>(0, static_cast<std::size_t>(c.indptr[S]) - 1)] =
                fdp.ConsumeIntegralInRange<std::int32_t>(-1, static_cast<std::int32_t>(c.p.pool_pages));
          break;
        default: c.positions[fdp.ConsumeIntegralInRange<std::size_t>(0, c.positions.size() - 1)] = fdp.ConsumeIntegral<std::int32_t>();
      }
    }
    // Snapshot, call, check the contract.
    const auto k_before = c.k, v_before = c.v;
    const auto indptr_before = c.indptr, indices_before = c.indices, last_before = c.last, pos_before = c.positions;
    const infokv::sequence_state state_before = state;
    view = c.view();
    const int call = fdp.ConsumeIntegralInRange<int>(0, 2);
    const infokv::status st = call == 0   ? comp.compress(view, b, state, sig)
                              : call == 1 ? comp.observe(view, b, state, sig)
                                          : comp.compress_prefill(view, b, state, sig);
    if (!st.ok()) {
      if (!(state == state_before))
        std::fprintf(stderr, "call %d (0 compress, 1 observe, 2 prefill) returned '%s' (detail %d) and changed the state\n",
                     call, std::string(st.message()).c_str(), st.detail());
      FUZZ_CHECK(!st.message().empty());
      FUZZ_CHECK(state == state_before);
      const auto same_bytes = [](const std::vector<std::vector<T>>& a, const std::vector<std::vector<T>>& b2) {
        for (std::size_t l = 0; l < a.size(); ++l)
          if (std::memcmp(a[l].data(), b2[l].data(), a[l].size() * sizeof(T)) != 0) return false;
        return true;
      };
      FUZZ_CHECK(same_bytes(c.k, k_before) && same_bytes(c.v, v_before));
      FUZZ_CHECK(c.indptr == indptr_before && c.indices == indices_before && c.last == last_before);
      FUZZ_CHECK(c.positions == pos_before);
      return;  // the engine would not go on with a table it corrupted
    }
    // A call that needed no eviction validates only its own sequence's streams: a corruption
    // elsewhere may pass, and the engine's table is then no longer one to continue with.
    if (corrupted) return;
    if (cfg.apply == infokv::apply_mode::plan_only && state.last_event().evicted)
      infokv::apply_plan(view, state.last_plan());
    if (cfg.apply == infokv::apply_mode::reindex && state.last_event().evicted)
      c.sync_reindexed(state.last_plan());
    else
      c.sync();
    std::vector<std::uint64_t> bits(infokv::page_bitmap_words(c.view()));
    FUZZ_CHECK(infokv::validate_page_table(c.view(), bits).ok());
    for (std::size_t s = s0; s < s1; ++s) FUZZ_CHECK(state.length(s - s0) == c.len[s]);
  }
}

template <class T, class Layout>
void pick_policy(FuzzedDataProvider& fdp) {
  switch (fdp.ConsumeIntegralInRange<int>(0, 9)) {
    case 0: drive<T, Layout>(fdp, infokv::make_infokv(fdp.ConsumeFloatingPointInRange<float>(-0.1f, 1.1f))); break;
    case 1: drive<T, Layout>(fdp, infokv::make_snapkv(fdp.ConsumeIntegralInRange<std::size_t>(0, 8),
                                                      fdp.ConsumeIntegralInRange<std::size_t>(0, 5))); break;
    case 2: drive<T, Layout>(fdp, infokv::make_h2o()); break;
    case 3: drive<T, Layout>(fdp, infokv::make_tova()); break;
    case 4: drive<T, Layout>(fdp, infokv::make_knorm()); break;
    case 5: drive<T, Layout>(fdp, infokv::make_expected_attention()); break;
    case 6: drive<T, Layout>(fdp, infokv::make_rkv()); break;
    case 7: drive<T, Layout>(fdp, infokv::make_random(fdp.ConsumeIntegral<std::uint64_t>())); break;
    case 8: drive<T, Layout>(fdp, infokv::make_infokv_adaptive()); break;
    default: drive<T, Layout>(fdp, infokv::make_streaming_llm());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider fdp(data, size);
  switch (fdp.ConsumeIntegralInRange<int>(0, 3)) {
    case 0: pick_policy<float, infokv::layout_nhd>(fdp); break;
    case 1: pick_policy<float, infokv::layout_hnd>(fdp); break;
    case 2: pick_policy<infokv::half, infokv::layout_nhd>(fdp); break;
    default: pick_policy<infokv::bfloat16, infokv::layout_hnd>(fdp);
  }
  return 0;
}
