// SPDX-License-Identifier: Apache-2.0
// infokv inside llama.cpp, without patching llama.cpp: an adapter that an engine author can
// include (or copy) next to llama.h.
//
// What it does per llama_decode:
//  - through the eval callback (chained with any callback the user set) it reads, at "ask"
//    time and so without splitting the graph, the cell each token of the ubatch is written to
//    (the K cache's SET_ROWS node), and it asks only for the activations the policy needs:
//    post-RoPE queries (Qcur-<il>, op ROPE), pre-RoPE queries (the Qcur-<il> nodes before it),
//    the residual stream after each layer (l_out-<il>); logits come from llama_get_logits_ith.
//    A policy that needs none of them (StreamingLLM, KNorm) adds no graph split.
//  - after the decode it hands each sequence's new tokens to the library over a cell-addressed
//    view of llama.cpp's own K (and V) cache: page_size 1, pages = cells, no copy
//    (infokv::make_cell_view), and compresses with apply_mode::reindex: survivors stay in their
//    cells; the evicted tokens' cells are released with llama_memory_seq_rm, one call per run of
//    consecutive positions. Positions are never shifted: the next token's position is the
//    sequence's true length, and the holes are masked by llama.cpp.
//  - several sequences may share one batch (n_seq_max > 1, kv_unified), each with its own state.
//
// Contract with the host: a sequence's tokens are contiguous within a batch; a policy that needs
// logits or hidden states sees every token as an output (batch.logits[i] = 1); sequences are
// not copied (llama_memory_seq_cp) or shifted (llama_memory_seq_add); anything that relies on
// llama_memory_seq_pos_min/max describing contiguous positions (context shift, prompt-cache
// reuse) is off for a compressed sequence. Host memory only (the CPU backend).
//
// Everything reached through llama.cpp internals (graph node names, cache tensor names and the
// SET_ROWS node that writes the cache) lives in namespace `internals` below; a llama.cpp whose
// internals moved is reported as adapter_error, never as silently wrong scores.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <ggml-backend.h>
#include <ggml.h>
#include <llama.h>

#include <infokv/infokv.hpp>

namespace infokv_llama {

class adapter_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// ---------------------------------------------------------------------------------------------
// llama.cpp internals (ggml-org/llama.cpp@0c1e57098, the pinned build): the only place that
// knows them. src/llama-context.cpp names graph nodes "<name>-<il>"; src/llama-kv-cache.cpp names
// the cache tensors "cache_k_l<il>" / "cache_v_l<il>" and writes new rows with GGML_OP_SET_ROWS
// whose src[1] is the I64 cell index of each ubatch token.
namespace internals {
inline constexpr std::string_view query_node = "Qcur";
inline constexpr std::string_view hidden_node = "l_out";
inline constexpr std::string_view cache_k_tensor = "cache_k_l";
inline constexpr std::string_view cache_v_tensor = "cache_v_l";

/// The layer of a name "<prefix><il>" (prefix includes any separator), or -1.
inline int layer_suffix(const char* name, std::string_view prefix) noexcept {
  const std::string_view n(name);
  if (n.size() <= prefix.size() || n.substr(0, prefix.size()) != prefix) return -1;
  int il = 0;
  for (char ch : n.substr(prefix.size())) {
    if (ch < '0' || ch > '9' || il > 100000) return -1;
    il = il * 10 + (ch - '0');
  }
  return il;
}
inline int node_layer(const ggml_tensor* t, std::string_view name) noexcept {
  const std::string p = std::string(name) + "-";
  return layer_suffix(t->name, p);
}
/// The layer of the cache tensor a SET_ROWS node writes into, or -1.
inline int cache_write_layer(const ggml_tensor* t, std::string_view cache) noexcept {
  if (t->op != GGML_OP_SET_ROWS || t->view_src == nullptr) return -1;
  return layer_suffix(t->view_src->name, cache);
}
}  // namespace internals

// ---------------------------------------------------------------------------------------------
// The library side, type-erased so that the host picks a policy at run time.

using cell_view = infokv::paged_kv_cache_view<infokv::half>;

class sequence_compressor {
 public:
  virtual ~sequence_compressor() = default;
  [[nodiscard]] virtual infokv::observation_needs needs() const = 0;
  [[nodiscard]] virtual const infokv::compress_config& config() const = 0;
  [[nodiscard]] virtual infokv::status can_implement() const = 0;
  [[nodiscard]] virtual infokv::sequence_state make_state() const = 0;
  [[nodiscard]] virtual infokv::status observe(const cell_view& v, infokv::sequence_state& st,
                                               const infokv::step_signals& sig) const = 0;
  [[nodiscard]] virtual infokv::status compress(const cell_view& v, infokv::sequence_state& st,
                                                const infokv::step_signals& sig) const = 0;
  [[nodiscard]] virtual infokv::status compress_prefill(const cell_view& v, infokv::sequence_state& st,
                                                        const infokv::step_signals& sig) const = 0;
  /// Whether the policy reads V rows (Expected Attention's value norms): llama.cpp stores V
  /// transposed unless flash attention is on, and the adapter then refuses such a policy.
  [[nodiscard]] virtual bool reads_values() const = 0;
};

template <class Policy>
class policy_compressor final : public sequence_compressor {
 public:
  policy_compressor(Policy p, const infokv::compress_config& c, const infokv::model_shape& s, bool reads_values)
      : c_(p, c, s), reads_values_(reads_values) {}
  [[nodiscard]] infokv::observation_needs needs() const override { return c_.needs(); }
  [[nodiscard]] const infokv::compress_config& config() const override { return c_.config(); }
  [[nodiscard]] infokv::status can_implement() const override { return c_.can_implement(); }
  [[nodiscard]] infokv::sequence_state make_state() const override { return c_.make_state(); }
  [[nodiscard]] infokv::status observe(const cell_view& v, infokv::sequence_state& st,
                                       const infokv::step_signals& sig) const override {
    return c_.observe(v, 0, st, sig);
  }
  [[nodiscard]] infokv::status compress(const cell_view& v, infokv::sequence_state& st,
                                        const infokv::step_signals& sig) const override {
    return c_.compress(v, 0, st, sig);
  }
  [[nodiscard]] infokv::status compress_prefill(const cell_view& v, infokv::sequence_state& st,
                                                const infokv::step_signals& sig) const override {
    return c_.compress_prefill(v, 0, st, sig);
  }
  [[nodiscard]] bool reads_values() const override { return reads_values_; }

 private:
  infokv::compressor<Policy> c_;
  bool reads_values_;
};

// ---------------------------------------------------------------------------------------------
// What the model states (never defaulted: llama.cpp's own values, read from the GGUF).

inline std::string model_meta(const llama_model* m, const std::string& key) {
  char buf[256];
  const int32_t n = llama_model_meta_val_str(m, key.c_str(), buf, sizeof buf);
  return n < 0 ? std::string() : std::string(buf, static_cast<std::size_t>(std::min<int32_t>(n, 255)));
}

inline infokv::model_shape model_shape_of(const llama_model* m) {
  infokv::model_shape s;
  s.num_layers = static_cast<std::size_t>(llama_model_n_layer(m));
  s.num_q_heads = static_cast<std::size_t>(llama_model_n_head(m));
  s.num_kv_heads = static_cast<std::size_t>(llama_model_n_head_kv(m));
  s.hidden_size = static_cast<std::size_t>(llama_model_n_embd(m));
  s.head_dim = s.num_q_heads == 0 ? 0 : s.hidden_size / s.num_q_heads;
  const std::string arch = model_meta(m, "general.architecture");
  if (const std::string kl = model_meta(m, arch + ".attention.key_length"); !kl.empty())
    s.head_dim = static_cast<std::size_t>(std::stoul(kl));
  s.vocab_size = static_cast<std::size_t>(llama_vocab_n_tokens(llama_model_get_vocab(m)));
  return s;
}

/// The RoPE llama.cpp applies for this model: the GGUF's frequency base and llama.cpp's pairing
/// for the architecture (LLAMA_ROPE_TYPE_NORM: adjacent pairs; NEOX: rotate-half). Throws where
/// the library could not reproduce it (scaled or partial rotations, other RoPE types).
inline infokv::rope_params rope_of(const llama_model* m) {
  const std::string arch = model_meta(m, "general.architecture");
  const std::string base = model_meta(m, arch + ".rope.freq_base");
  if (base.empty()) throw adapter_error("the model file does not state " + arch + ".rope.freq_base");
  if (std::abs(llama_model_rope_freq_scale_train(m) - 1.0f) > 0.0f)
    throw adapter_error("the model uses scaled RoPE, which the library does not reproduce");
  infokv::rope_params r;
  r.theta = std::stod(base);
  switch (llama_model_rope_type(m)) {
    case LLAMA_ROPE_TYPE_NORM: r.pairing = infokv::rope_pairing::adjacent; break;
    case LLAMA_ROPE_TYPE_NEOX: r.pairing = infokv::rope_pairing::rotate_half; break;
    default: throw adapter_error("the model's RoPE type is neither llama.cpp's NORM nor NEOX");
  }
  return r;
}

// ---------------------------------------------------------------------------------------------

struct adapter_options {
  /// After every call, check that each cell a sequence holds still has the K rows (first and
  /// last layer) its token was written with, and that llama.cpp's highest position is the
  /// sequence's last one. For tests and --verify; costs a copy of two rows per token.
  bool verify = false;
  /// Re-pack sequences into the lowest cells when eviction left the highest used cell two or more
  /// 256-cell blocks above where the held cells would end packed: llama.cpp attends (and, without
  /// flash attention, computes over) every cell up to the highest used one. (One block of
  /// hysteresis: a sequence that hovers at its budget refills its own holes and must not be
  /// re-packed at every eviction.)
  bool repack = true;
};

/// What happened in the last adapter::decode, and running totals.
struct adapter_stats {
  std::size_t decodes = 0;
  std::size_t evictions = 0;       // library eviction events, all sequences
  std::size_t evicted_tokens = 0;  // cells released
  std::size_t seq_rm_calls = 0;
  std::size_t repacks = 0;          // sequences moved to lower cells
  double repack_seconds = 0.0;
  double library_seconds = 0.0;    // inside observe / compress / compress_prefill
  double callback_seconds = 0.0;   // inside the eval callback (copies of activations)
  double seq_rm_seconds = 0.0;
  double verify_seconds = 0.0;
};

class adapter {
 public:
  enum class phase {
    prompt,       // part of a prompt: observed, never evicted
    prompt_last,  // the prompt's last part: observed, then compressed to the prefill budget
    decode,       // generated tokens: compress() with the decode budget
  };

  /// `comp` null: policy none (cells are still tracked, nothing is ever evicted).
  adapter(const llama_model* model, std::shared_ptr<const sequence_compressor> comp, adapter_options opt = {})
      : model_(model), comp_(std::move(comp)), opt_(opt), shape_(model_shape_of(model)) {
    if (comp_ != nullptr) {
      const auto s = comp_->can_implement();
      if (!s.ok()) throw adapter_error(std::string("the library refuses the configuration: ") + std::string(s.message()));
      if (comp_->config().apply != infokv::apply_mode::reindex)
        throw adapter_error("llama.cpp cannot move cache rows: compress_config::apply must be apply_mode::reindex");
      if (comp_->config().granularity != infokv::stream_granularity::per_sequence)
        throw adapter_error("llama.cpp evicts a token from every layer at once: use per_sequence granularity");
      needs_ = comp_->needs();
    }
  }
  adapter(const adapter&) = delete;
  adapter& operator=(const adapter&) = delete;

  /// Sets the eval callback on `params` (keeping the one already there, which still sees every
  /// node it asks for) and checks what the adapter needs of the context. Call before
  /// llama_init_from_model; `params` must outlive nothing (the adapter keeps what it needs).
  void install(llama_context_params& params) {
    if (params.type_k != GGML_TYPE_F16)
      throw adapter_error(std::string("K cache type ") + ggml_type_name(params.type_k) +
                          ": the library scores f16 keys (a quantized llama.cpp K cache is also Hadamard-rotated); "
                          "use type_k = f16");
    if (params.n_seq_max > 1 && !params.kv_unified)
      throw adapter_error("several sequences need kv_unified = true (one cell pool; the adapter's cell ids are per pool)");
    installed_ = true;
    user_cb_ = params.cb_eval;
    user_ud_ = params.cb_eval_user_data;
    params.cb_eval = &adapter::eval_callback;
    params.cb_eval_user_data = this;
    n_seq_max_ = params.n_seq_max == 0 ? 1 : params.n_seq_max;
  }

  /// After llama_init_from_model(model, params-with-install()).
  void attach(llama_context* ctx) {
    if (!installed_) throw adapter_error("install() was not called on this context's params");
    ctx_ = ctx;
    n_cells_ = llama_n_ctx(ctx);
    const std::size_t keep = comp_ == nullptr ? 0 : comp_->config().capacity;
    if (comp_ != nullptr && n_cells_ < keep)
      throw adapter_error("n_ctx " + std::to_string(n_cells_) + " holds fewer cells than compress_config::capacity " +
                          std::to_string(keep));
    seqs_.assign(n_seq_max_, {});
    cell_pos_.assign(n_cells_, -1);
    k_pools_.assign(shape_.num_layers, nullptr);
    v_pools_.assign(shape_.num_layers, nullptr);
  }

  /// llama_decode(ctx, batch), then the library for every sequence of the batch. Returns
  /// llama_decode's result; on 0 the cache is compressed. Throws adapter_error on anything the
  /// adapter cannot do correctly (nothing is evicted then).
  int decode(const llama_batch& batch, phase ph) {
    if (ctx_ == nullptr) throw adapter_error("attach() first");
    begin_capture(batch);
    const int rc = llama_decode(ctx_, batch);
    capturing_ = false;
    if (!error_.empty()) throw adapter_error(error_);  // the context is not to be used further
    if (rc != 0) return rc;
    ++stats_.decodes;
    finish(batch, ph);
    return 0;
  }

  /// The host dropped a sequence (llama_memory_seq_rm over all of it): forget its state.
  void forget(llama_seq_id seq) {
    auto& s = seqs_.at(static_cast<std::size_t>(seq));
    for (std::int32_t c : s.cells) cell_pos_[static_cast<std::size_t>(c)] = -1;
    s = {};
  }

  [[nodiscard]] std::size_t cells_held(llama_seq_id seq) const { return seqs_.at(static_cast<std::size_t>(seq)).cells.size(); }
  /// The cells of a sequence in the library's logical order, and the position in each.
  [[nodiscard]] const std::vector<std::int32_t>& cells(llama_seq_id seq) const {
    return seqs_.at(static_cast<std::size_t>(seq)).cells;
  }
  [[nodiscard]] std::int32_t cell_position(std::int32_t cell) const { return cell_pos_.at(static_cast<std::size_t>(cell)); }
  /// The highest cell any sequence holds, plus one (llama.cpp attends up to it, padded to 256).
  [[nodiscard]] std::size_t high_water() const {
    std::size_t hw = 0;
    for (const auto& s : seqs_)
      for (std::int32_t c : s.cells) hw = std::max(hw, static_cast<std::size_t>(c) + 1);
    return hw;
  }
  [[nodiscard]] const adapter_stats& stats() const noexcept { return stats_; }
  /// Whether every token of a batch must be an output (the policy reads logits or hidden states).
  [[nodiscard]] bool needs_every_output() const noexcept { return needs_.entropy_top_k != 0 || needs_.evolution; }
  [[nodiscard]] const sequence_compressor* compressor() const noexcept { return comp_.get(); }
  [[nodiscard]] const infokv::sequence_state* state(llama_seq_id seq) const {
    const auto& s = seqs_.at(static_cast<std::size_t>(seq));
    return s.state ? &*s.state : nullptr;
  }
  [[nodiscard]] const infokv::model_shape& shape() const noexcept { return shape_; }
  /// Bytes of K and V one held token occupies in llama.cpp's f16 cache (all layers).
  [[nodiscard]] std::size_t bytes_per_cell() const noexcept {
    return 2 * shape_.num_layers * shape_.num_kv_heads * shape_.head_dim * sizeof(std::uint16_t);
  }

 private:
  struct sequence {
    std::vector<std::int32_t> cells;  // logical order, as the library keeps it
    std::optional<infokv::sequence_state> state;
    std::unordered_map<std::int32_t, std::vector<std::uint16_t>> rows;  // verify: pos -> K rows (first, last layer)
  };

  // ---- capture (eval callback) ----
  void begin_capture(const llama_batch& batch) {
    const std::size_t N = static_cast<std::size_t>(batch.n_tokens);
    const std::size_t L = shape_.num_layers, QD = shape_.num_q_heads * shape_.head_dim;
    cap_cells_.clear();
    q_rows_.assign(L, 0);
    pq_rows_.assign(L, 0);
    h_rows_.assign(L, 0);
    if (needs_.window != 0) q_.resize(L * N * QD);
    if (needs_.query_stats) pq_.resize(L * N * QD);
    if (needs_.evolution) h_.resize(L * N * shape_.hidden_size);
    v_transposed_ = false;
    capturing_ = true;
  }

  // No exception crosses ggml: the first error is kept, the rest of the graph is not captured
  // (a false answer after a computed node stops the graph) and decode() throws it.
  static bool eval_callback(ggml_tensor* t, bool ask, void* ud) {
    auto* self = static_cast<adapter*>(ud);
    const auto t0 = std::chrono::steady_clock::now();
    bool result = true;
    try {
      if (ask) {
        const bool user = self->user_cb_ != nullptr && self->user_cb_(t, true, self->user_ud_);
        self->user_asked_ = user;
        result = (self->error_.empty() && self->ask(t)) || user;
      } else {
        if (self->error_.empty() && self->wanted(t)) self->take(t);
        result = self->user_asked_ ? self->user_cb_(t, false, self->user_ud_) : true;
      }
    } catch (const std::exception& e) {
      if (self->error_.empty()) self->error_ = e.what();
      self->capturing_ = false;
      result = ask;  // asked: compute up to here, then stop below
    }
    if (!ask && !self->error_.empty()) result = false;
    self->stats_.callback_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return result;
  }

  [[nodiscard]] std::size_t query_width() const noexcept { return shape_.num_q_heads * shape_.head_dim; }

  /// Which nodes the adapter takes after they are computed.
  [[nodiscard]] bool wanted(const ggml_tensor* t) const noexcept {
    if (!capturing_) return false;
    if (needs_.window != 0 && t->op == GGML_OP_ROPE && internals::node_layer(t, internals::query_node) >= 0) return true;
    if (needs_.query_stats && t->op != GGML_OP_ROPE && internals::node_layer(t, internals::query_node) >= 0 &&
        ggml_nelements(t) % static_cast<std::int64_t>(query_width()) == 0)
      return true;
    if (needs_.evolution && internals::node_layer(t, internals::hidden_node) >= 0) return true;
    return false;
  }

  /// At ask time: read the cache writes (inputs are set before the graph runs, so no split),
  /// count pre-RoPE rows, and say which nodes to compute up to.
  bool ask(ggml_tensor* t) {
    if (!capturing_) return false;
    if (const int il = internals::cache_write_layer(t, internals::cache_k_tensor); il >= 0) {
      note_pool(t, static_cast<std::size_t>(il), true);
      if (il == 0) {
        const ggml_tensor* idx = t->src[1];
        if (idx == nullptr || idx->type != GGML_TYPE_I64 || !ggml_is_contiguous(idx))
          throw_internal("the K cache write's cell indices are not an I64 vector");
        const std::size_t n = static_cast<std::size_t>(ggml_nelements(idx));
        std::vector<std::int64_t> tmp(n);
        ggml_backend_tensor_get(idx, tmp.data(), 0, n * sizeof(std::int64_t));
        for (std::int64_t c : tmp) {
          if (c < 0 || static_cast<std::size_t>(c) >= n_cells_) throw_internal("a cell index outside the cache");
          cap_cells_.push_back(static_cast<std::int32_t>(c));
        }
        last_ubatch_ = n;
      }
      return false;
    }
    if (const int il = internals::cache_write_layer(t, internals::cache_v_tensor); il >= 0) {
      note_pool(t, static_cast<std::size_t>(il), false);
      if (il == 0 && t->src[1] != nullptr && static_cast<std::size_t>(ggml_nelements(t->src[1])) != last_ubatch_)
        v_transposed_ = true;  // one index per element: the V cache is transposed (flash attention off)
      return false;
    }
    if (t->op == GGML_OP_ROPE && needs_.query_stats) {
      // The ROPE node closes this ubatch's pre-RoPE rows of the layer.
      if (const int il = internals::node_layer(t, internals::query_node); il >= 0)
        pq_rows_[static_cast<std::size_t>(il)] += static_cast<std::size_t>(ggml_nelements(t)) / query_width();
    }
    return wanted(t);
  }

  void note_pool(const ggml_tensor* t, std::size_t il, bool key) {
    if (il >= shape_.num_layers) throw_internal("a cache layer beyond the model's layers");
    const ggml_tensor* pool = t->view_src;
    if (pool->type != GGML_TYPE_F16) throw adapter_error(std::string("the KV cache holds ") + ggml_type_name(pool->type) + ", not f16");
    if (pool->buffer == nullptr || !ggml_backend_buffer_is_host(pool->buffer))
      throw adapter_error("the KV cache is not in host memory (the adapter reads it in place on the CPU backend)");
    if (pool->ne[2] > 1) throw adapter_error("the KV cache has one stream per sequence: set kv_unified = true");
    if (key) {
      const std::size_t row = shape_.num_kv_heads * shape_.head_dim;
      if (static_cast<std::size_t>(pool->ne[0]) != row || static_cast<std::size_t>(pool->ne[1]) != n_cells_)
        throw_internal("the K cache tensor's shape is not [kv_heads * head_dim, n_ctx]");
      k_stride_ = pool->nb[1] / sizeof(std::uint16_t);
      k_pools_[il] = static_cast<infokv::half*>(pool->data);
    } else {
      v_pools_[il] = static_cast<infokv::half*>(pool->data);
    }
  }

  void take(ggml_tensor* t) {
    if (!ggml_is_contiguous(t)) throw_internal(std::string("node ") + t->name + " is not contiguous");
    const std::size_t ne = static_cast<std::size_t>(ggml_nelements(t));
    const std::size_t QD = query_width();
    if (t->op == GGML_OP_ROPE && internals::node_layer(t, internals::query_node) >= 0 && needs_.window != 0) {
      const auto l = static_cast<std::size_t>(internals::node_layer(t, internals::query_node));
      copy_rows(t, q_, l, q_rows_[l], ne / QD, QD);
      q_rows_[l] += ne / QD;
    } else if (internals::node_layer(t, internals::query_node) >= 0) {
      // The last pre-RoPE node of the ubatch wins (projection, bias, reshape: the same values).
      const auto l = static_cast<std::size_t>(internals::node_layer(t, internals::query_node));
      copy_rows(t, pq_, l, pq_rows_[l], ne / QD, QD);
    } else {
      const auto l = static_cast<std::size_t>(internals::node_layer(t, internals::hidden_node));
      const std::size_t E = shape_.hidden_size;
      if (ne % E != 0) throw_internal("l_out is not [hidden_size, tokens]");
      copy_rows(t, h_, l, h_rows_[l], ne / E, E);
      h_rows_[l] += ne / E;
    }
  }

  void copy_rows(const ggml_tensor* t, std::vector<float>& dst, std::size_t l, std::size_t row0, std::size_t rows,
                 std::size_t width) {
    if (t->type != GGML_TYPE_F32) throw_internal(std::string("node ") + t->name + " is not f32");
    if (l >= shape_.num_layers) throw_internal("a layer beyond the model's layers");
    const std::size_t N = dst.size() / (shape_.num_layers * width);
    if (row0 + rows > N) throw_internal(std::string("node ") + t->name + " has more rows than the batch");
    ggml_backend_tensor_get(t, dst.data() + (l * N + row0) * width, 0, rows * width * sizeof(float));
  }

  [[noreturn]] static void throw_internal(const std::string& what) {
    throw adapter_error("llama.cpp's internals differ from what the adapter was written against "
                        "(ggml-org/llama.cpp@0c1e57098): " + what);
  }

  // ---- after the decode: the library ----
  void finish(const llama_batch& batch, phase ph) {
    const std::size_t N = static_cast<std::size_t>(batch.n_tokens), L = shape_.num_layers;
    if (cap_cells_.size() != N) throw_internal("no K cache write for every token (saw " + std::to_string(cap_cells_.size()) +
                                               " of " + std::to_string(N) + ")");
    for (std::size_t l = 0; l < L; ++l) {
      if (k_pools_[l] == nullptr) throw_internal("no K cache write seen for layer " + std::to_string(l));
      if (needs_.window != 0 && q_rows_[l] != N) throw_internal("post-RoPE queries (Qcur, ROPE) missing for a layer");
      if (needs_.query_stats && pq_rows_[l] != N) throw_internal("pre-RoPE queries (Qcur) missing for a layer");
      if (needs_.evolution && h_rows_[l] != N)
        throw adapter_error("hidden states of every token are needed (l_out): mark every token as an output");
    }
    if (comp_ != nullptr && comp_->reads_values() && v_transposed_)
      throw adapter_error("this policy reads V rows, which llama.cpp stores transposed without flash attention: "
                          "set flash_attn_type = LLAMA_FLASH_ATTN_TYPE_ENABLED");
    // The sequences of the batch, each a contiguous run of tokens.
    std::size_t i = 0;
    while (i < N) {
      if (batch.n_seq_id != nullptr && batch.n_seq_id[i] != 1)
        throw adapter_error("a token shared by several sequences (the adapter keeps one cell list per sequence)");
      const llama_seq_id seq = batch.seq_id != nullptr ? batch.seq_id[i][0] : 0;
      std::size_t j = i + 1;
      while (j < N && (batch.seq_id != nullptr ? batch.seq_id[j][0] : 0) == seq) ++j;
      if (seq < 0 || static_cast<std::size_t>(seq) >= seqs_.size()) throw adapter_error("a sequence id beyond n_seq_max");
      for (std::size_t k = j; k < N; ++k)
        if ((batch.seq_id != nullptr ? batch.seq_id[k][0] : 0) == seq)
          throw adapter_error("a sequence's tokens must be contiguous within the batch");
      run_sequence(batch, seq, i, j - i, ph);
      i = j;
    }
    if (opt_.repack && evicted_this_call_) maybe_repack();
    evicted_this_call_ = false;
  }

  /// llama.cpp pads the attended range to 256 cells past the highest used cell. When that is a
  /// whole block more than the held cells need, move sequences down, highest first: the state of
  /// one sequence is saved, its cells freed and the state restored (llama.cpp puts it in the
  /// lowest free cells it finds). The restore does not say which cell each token went to: the
  /// adapter zeroes every free cell's first-layer K row before the restore (free cells are masked,
  /// and a zero key keeps the masked scores finite: a NaN there would poison attention without
  /// flash attention) and finds each token by its own K rows after it.
  void maybe_repack() {
    constexpr std::size_t kBlock = 256;
    const auto blocks = [&](std::size_t n) { return (n + kBlock - 1) / kBlock; };
    std::size_t held = 0;
    for (const auto& q : seqs_) held += q.cells.size();
    for (std::size_t guard = 0; guard < seqs_.size(); ++guard) {
      if (blocks(high_water()) <= blocks(held) + 1) return;
      // the sequence holding the highest cell
      std::size_t top = 0, top_cell = 0;
      for (std::size_t q = 0; q < seqs_.size(); ++q)
        for (std::int32_t c : seqs_[q].cells)
          if (static_cast<std::size_t>(c) + 1 > top_cell) top_cell = static_cast<std::size_t>(c) + 1, top = q;
      repack(static_cast<llama_seq_id>(top));
    }
  }

  void repack(llama_seq_id seq) {
    const auto t0 = std::chrono::steady_clock::now();
    auto& s = seqs_[static_cast<std::size_t>(seq)];
    const std::size_t n = s.cells.size();
    if (n == 0) return;
    const std::size_t row = shape_.num_kv_heads * shape_.head_dim;
    std::vector<std::vector<std::uint16_t>> rows(n);
    for (std::size_t i = 0; i < n; ++i) rows[i] = k_rows(s.cells[i]);
    const std::size_t size = llama_state_seq_get_size(ctx_, seq);
    std::vector<std::uint8_t> buf(size);
    if (llama_state_seq_get_data(ctx_, buf.data(), size, seq) != size) throw adapter_error("llama_state_seq_get_data failed");
    llama_memory_t mem = llama_get_memory(ctx_);
    if (!llama_memory_seq_rm(mem, seq, -1, -1)) throw adapter_error("llama_memory_seq_rm refused to clear a sequence");
    std::vector<bool> other(n_cells_, false);
    for (std::size_t q = 0; q < seqs_.size(); ++q)
      if (q != static_cast<std::size_t>(seq))
        for (std::int32_t c : seqs_[q].cells) other[static_cast<std::size_t>(c)] = true;
    for (std::size_t c = 0; c < n_cells_; ++c)
      if (!other[c]) std::fill_n(reinterpret_cast<std::uint16_t*>(k_pools_[0] + c * k_stride_), row, std::uint16_t{0});
    if (llama_state_seq_set_data(ctx_, buf.data(), size, seq) == 0) throw adapter_error("llama_state_seq_set_data failed");
    // Find each token by its rows among the cells that are no longer marked.
    std::unordered_map<std::uint64_t, std::vector<std::size_t>> by_hash;
    const auto hash = [&](const std::uint16_t* r) {
      std::uint64_t h = 1469598103934665603ull;
      for (std::size_t d = 0; d < row; ++d) h = (h ^ r[d]) * 1099511628211ull;
      return h;
    };
    for (std::size_t i = 0; i < n; ++i) by_hash[hash(rows[i].data())].push_back(i);
    std::vector<std::int32_t> moved(n, -1);
    std::size_t found = 0;
    for (std::size_t c = 0; c < n_cells_ && found < n; ++c) {
      if (other[c]) continue;
      const auto* r = reinterpret_cast<const std::uint16_t*>(k_pools_[0] + c * k_stride_);
      if (std::all_of(r, r + row, [](std::uint16_t x) { return x == 0; })) continue;  // not restored here
      const auto it = by_hash.find(hash(r));
      if (it == by_hash.end()) continue;
      for (std::size_t i : it->second)
        if (moved[i] < 0 && k_rows(static_cast<std::int32_t>(c)) == rows[i]) {
          moved[i] = static_cast<std::int32_t>(c);
          ++found;
          break;
        }
    }
    if (found != n) throw adapter_error("re-pack: " + std::to_string(n - found) + " restored tokens not found in the cache");
    std::vector<std::int32_t> pos(n);
    for (std::size_t i = 0; i < n; ++i) pos[i] = cell_pos_[static_cast<std::size_t>(s.cells[i])];
    for (std::size_t i = 0; i < n; ++i) cell_pos_[static_cast<std::size_t>(s.cells[i])] = -1;
    for (std::size_t i = 0; i < n; ++i) {
      s.cells[i] = moved[i];
      cell_pos_[static_cast<std::size_t>(moved[i])] = pos[i];
    }
    ++stats_.repacks;
    stats_.repack_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (opt_.verify) verify(seq, s);
  }

  void run_sequence(const llama_batch& batch, llama_seq_id seq, std::size_t t0, std::size_t n, phase ph) {
    auto& s = seqs_[static_cast<std::size_t>(seq)];
    const std::size_t N = static_cast<std::size_t>(batch.n_tokens);
    for (std::size_t k = 0; k < n; ++k) {
      const std::int32_t c = cap_cells_[t0 + k];
      const std::int32_t pos = batch.pos != nullptr ? batch.pos[t0 + k] : -1;
      if (pos < 0) throw adapter_error("the batch must give every token's position (batch.pos)");
      s.cells.push_back(c);
      cell_pos_[static_cast<std::size_t>(c)] = pos;
      if (opt_.verify) s.rows[pos] = k_rows(c);
    }
    if (comp_ != nullptr) {
      if (!s.state) s.state.emplace(comp_->make_state());
      const infokv::step_signals sig = signals(batch, t0, n, N);
      std::vector<std::int32_t> begin{0, static_cast<std::int32_t>(s.cells.size())};
      std::int32_t nonempty = 0;
      std::vector<infokv::half*> vp(v_pools_);
      if (v_transposed_) vp = k_pools_;  // never read: reads_values() policies were refused above
      infokv::cell_cache_params<infokv::half> p;
      p.num_layers = shape_.num_layers;
      p.num_kv_heads = shape_.num_kv_heads;
      p.head_dim = shape_.head_dim;
      p.num_cells = n_cells_;
      p.row_stride = k_stride_;
      p.num_sequences = 1;
      p.key_layers = k_pools_.data();
      p.value_layers = vp.data();
      p.seq_begin = begin.data();
      p.cells = s.cells.data();
      p.seq_nonempty = &nonempty;
      const cell_view view = infokv::make_cell_view(p);
      const auto t_lib = std::chrono::steady_clock::now();
      infokv::status st;
      switch (ph) {
        case phase::prompt: st = comp_->observe(view, *s.state, sig); break;
        case phase::prompt_last: st = comp_->compress_prefill(view, *s.state, sig); break;
        case phase::decode: st = comp_->compress(view, *s.state, sig); break;
      }
      stats_.library_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t_lib).count();
      if (!st.ok()) {
        s.cells.resize(s.cells.size() - n);  // the library left everything as it was
        throw adapter_error(std::string("infokv: ") + std::string(st.message()) + " (detail " +
                            std::to_string(st.detail()) + ")");
      }
      if (s.state->last_event().evicted) release(seq, s, static_cast<std::size_t>(begin[1]));
    }
    if (opt_.verify) verify(seq, s);
  }

  /// The library shrank the cell list to `len` and listed the evicted cells: release them.
  void release(llama_seq_id seq, sequence& s, std::size_t len) {
    const auto plan = s.state->last_plan();
    s.cells.resize(len);
    std::vector<std::int32_t> positions;
    positions.reserve(plan.freed.size());
    for (const auto& f : plan.freed) {
      auto& pos = cell_pos_.at(static_cast<std::size_t>(f.page));
      positions.push_back(pos);
      if (opt_.verify) s.rows.erase(pos);
      pos = -1;
    }
    std::sort(positions.begin(), positions.end());
    const auto t_rm = std::chrono::steady_clock::now();
    llama_memory_t mem = llama_get_memory(ctx_);
    for (std::size_t a = 0; a < positions.size();) {
      std::size_t b = a + 1;
      while (b < positions.size() && positions[b] == positions[b - 1] + 1) ++b;
      if (!llama_memory_seq_rm(mem, seq, positions[a], positions[b - 1] + 1))
        throw adapter_error("llama_memory_seq_rm refused to release positions");
      ++stats_.seq_rm_calls;
      a = b;
    }
    stats_.seq_rm_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t_rm).count();
    ++stats_.evictions;
    stats_.evicted_tokens += positions.size();
    evicted_this_call_ = true;
  }

  infokv::step_signals signals(const llama_batch& batch, std::size_t t0, std::size_t n, std::size_t N) {
    const std::size_t L = shape_.num_layers, QD = query_width(), E = shape_.hidden_size, V = shape_.vocab_size;
    infokv::step_signals sig;
    sig.num_tokens = n;
    const auto slice = [&](const std::vector<float>& all, std::vector<float>& out, std::size_t width) {
      if (n == N) return std::span<const float>(all.data(), L * N * width);
      out.resize(L * n * width);
      for (std::size_t l = 0; l < L; ++l)
        std::memcpy(out.data() + l * n * width, all.data() + (l * N + t0) * width, n * width * sizeof(float));
      return std::span<const float>(out.data(), out.size());
    };
    if (needs_.window != 0) sig.queries = slice(q_, q_seq_, QD);
    if (needs_.query_stats) sig.prerope_queries = slice(pq_, pq_seq_, QD);
    if (needs_.evolution) sig.hidden_states = slice(h_, h_seq_, E);
    if (needs_.entropy_top_k != 0) {
      for (std::size_t k = 0; k < n; ++k)
        if (batch.logits == nullptr || batch.logits[t0 + k] == 0)
          throw adapter_error("the policy needs every token's logits: mark every token as an output (batch.logits)");
      const float* first = llama_get_logits_ith(ctx_, static_cast<std::int32_t>(t0));
      const float* last = llama_get_logits_ith(ctx_, static_cast<std::int32_t>(t0 + n - 1));
      if (first == nullptr || last == nullptr) throw adapter_error("llama_get_logits_ith returned no row");
      if (last == first + (n - 1) * V) {
        sig.logits = std::span<const float>(first, n * V);
      } else {
        logits_seq_.resize(n * V);
        for (std::size_t k = 0; k < n; ++k)
          std::memcpy(logits_seq_.data() + k * V, llama_get_logits_ith(ctx_, static_cast<std::int32_t>(t0 + k)),
                      V * sizeof(float));
        sig.logits = logits_seq_;
      }
    }
    return sig;
  }

  std::vector<std::uint16_t> k_rows(std::int32_t cell) const {
    const std::size_t row = shape_.num_kv_heads * shape_.head_dim;
    std::vector<std::uint16_t> out(2 * row);
    const std::size_t last = shape_.num_layers - 1;
    std::memcpy(out.data(), k_pools_[0] + static_cast<std::size_t>(cell) * k_stride_, row * 2);
    std::memcpy(out.data() + row, k_pools_[last] + static_cast<std::size_t>(cell) * k_stride_, row * 2);
    return out;
  }

  void verify(llama_seq_id seq, const sequence& s) {
    const auto t_v = std::chrono::steady_clock::now();
    std::int32_t max_pos = -1;
    for (std::int32_t c : s.cells) {
      const std::int32_t pos = cell_pos_[static_cast<std::size_t>(c)];
      if (pos < 0) throw adapter_error("verify: a held cell has no position");
      const auto it = s.rows.find(pos);
      if (it == s.rows.end() || it->second != k_rows(c))
        throw adapter_error("verify: cell " + std::to_string(c) + " does not hold the key of position " + std::to_string(pos));
      max_pos = std::max(max_pos, pos);
    }
    if (s.rows.size() != s.cells.size()) throw adapter_error("verify: the adapter tracks tokens it no longer holds");
    const llama_pos llama_max = llama_memory_seq_pos_max(llama_get_memory(ctx_), seq);
    if (llama_max != max_pos)
      throw adapter_error("verify: llama.cpp's highest position " + std::to_string(llama_max) + " differs from the adapter's " +
                          std::to_string(max_pos));
    stats_.verify_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t_v).count();
  }

  const llama_model* model_;
  std::shared_ptr<const sequence_compressor> comp_;
  adapter_options opt_;
  infokv::model_shape shape_;
  infokv::observation_needs needs_{};
  llama_context* ctx_ = nullptr;
  ggml_backend_sched_eval_callback user_cb_ = nullptr;
  void* user_ud_ = nullptr;
  bool installed_ = false, user_asked_ = false;
  std::string error_;
  std::size_t n_seq_max_ = 1, n_cells_ = 0, k_stride_ = 0, last_ubatch_ = 0;
  bool capturing_ = false, v_transposed_ = false, evicted_this_call_ = false;
  std::vector<sequence> seqs_;
  std::vector<std::int32_t> cell_pos_;
  std::vector<infokv::half*> k_pools_, v_pools_;
  std::vector<std::int32_t> cap_cells_;
  std::vector<std::size_t> q_rows_, pq_rows_, h_rows_;
  std::vector<float> q_, pq_, h_, q_seq_, pq_seq_, h_seq_, logits_seq_;
  adapter_stats stats_;
};

}  // namespace infokv_llama
