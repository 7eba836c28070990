// SPDX-License-Identifier: Apache-2.0
// A Llama-family model read from GGUF: the architecture numbers from the file's llama.* keys and
// the weights dequantised to float (row-major [out][in], as GGUF stores them with ne[0] = in).
// Tied embeddings (no output.weight) reuse token_embd as the LM head.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "eigen.hpp"

#include "dequantize.hpp"
#include "gguf.hpp"

namespace engine {

using row_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using vector = Eigen::VectorXf;

struct llama_config {
  std::size_t layers = 0, hidden = 0, ffn = 0, heads = 0, kv_heads = 0, head_dim = 0, vocab = 0, context = 0;
  double rope_theta = 10000.0;
  double rms_eps = 1e-5;

  [[nodiscard]] static llama_config from(const gguf_file& f) {
    const std::string arch = f.get_string("general.architecture");
    if (arch != "llama")
      throw gguf_error("unsupported architecture '" + arch + "' (this engine runs llama-family models)");
    llama_config c;
    c.layers = f.get_uint("llama.block_count");
    c.hidden = f.get_uint("llama.embedding_length");
    c.ffn = f.get_uint("llama.feed_forward_length");
    c.heads = f.get_uint("llama.attention.head_count");
    c.kv_heads = f.get_uint("llama.attention.head_count_kv", c.heads);
    c.context = f.get_uint("llama.context_length");
    c.rope_theta = f.get_float("llama.rope.freq_base", 10000.0);
    c.rms_eps = f.get_float("llama.attention.layer_norm_rms_epsilon", 1e-5);
    if (c.layers == 0 || c.hidden == 0 || c.heads == 0 || c.kv_heads == 0 || c.hidden % c.heads != 0 ||
        c.heads % c.kv_heads != 0 || c.ffn == 0 || c.context == 0 || c.layers > 1024 || c.hidden > (1u << 16))
      throw gguf_error("implausible llama.* hyperparameters in the model file");
    c.head_dim = c.hidden / c.heads;
    if (c.head_dim % 2 != 0) throw gguf_error("odd head dimension: RoPE needs pairs");
    const std::uint64_t rope_dims = f.get_uint("llama.rope.dimension_count", c.head_dim);
    if (rope_dims != c.head_dim) throw gguf_error("partial RoPE (rope.dimension_count < head_dim) is not supported");
    const auto* emb = f.find_tensor("token_embd.weight");
    if (emb == nullptr || emb->shape.size() != 2) throw gguf_error("tensor 'token_embd.weight' is missing");
    c.vocab = static_cast<std::size_t>(emb->shape[1]);
    return c;
  }
};

struct llama_layer {
  vector attn_norm, ffn_norm;
  row_matrix wq, wk, wv, wo, w_gate, w_up, w_down;
};

struct llama_model {
  llama_config config;
  row_matrix token_embd;  // [vocab][hidden]
  row_matrix output;      // [vocab][hidden]; empty when tied to token_embd
  vector output_norm;
  std::vector<llama_layer> layers;

  [[nodiscard]] const row_matrix& lm_head() const noexcept { return output.size() == 0 ? token_embd : output; }

  [[nodiscard]] static llama_model load(const gguf_file& f) {
    llama_model m;
    m.config = llama_config::from(f);
    const auto& c = m.config;
    m.token_embd = matrix(f, "token_embd.weight", c.vocab, c.hidden);
    if (f.find_tensor("output.weight") != nullptr) m.output = matrix(f, "output.weight", c.vocab, c.hidden);
    m.output_norm = vec(f, "output_norm.weight", c.hidden);
    const std::size_t q = c.heads * c.head_dim, kv = c.kv_heads * c.head_dim;
    for (std::size_t l = 0; l < c.layers; ++l) {
      const std::string p = "blk." + std::to_string(l) + ".";
      llama_layer L;
      L.attn_norm = vec(f, p + "attn_norm.weight", c.hidden);
      L.ffn_norm = vec(f, p + "ffn_norm.weight", c.hidden);
      L.wq = matrix(f, p + "attn_q.weight", q, c.hidden);
      L.wk = matrix(f, p + "attn_k.weight", kv, c.hidden);
      L.wv = matrix(f, p + "attn_v.weight", kv, c.hidden);
      L.wo = matrix(f, p + "attn_output.weight", c.hidden, q);
      L.w_gate = matrix(f, p + "ffn_gate.weight", c.ffn, c.hidden);
      L.w_up = matrix(f, p + "ffn_up.weight", c.ffn, c.hidden);
      L.w_down = matrix(f, p + "ffn_down.weight", c.hidden, c.ffn);
      m.layers.push_back(std::move(L));
    }
    return m;
  }

 private:
  static row_matrix matrix(const gguf_file& f, const std::string& name, std::size_t rows, std::size_t cols) {
    const gguf_tensor& t = f.tensor(name);
    if (t.shape.size() != 2 || t.shape[0] != cols || t.shape[1] != rows)
      throw gguf_error("tensor '" + name + "' has shape [" + std::to_string(t.shape[0]) +
                       (t.shape.size() > 1 ? ", " + std::to_string(t.shape[1]) : std::string()) + "], expected [" +
                       std::to_string(cols) + ", " + std::to_string(rows) + "]");
    // Type first: only a supported type has had its byte range checked against the file, so
    // only then is the allocation below bounded by the file's size.
    if (block_format_of(t.type).elements == 0 || t.data == nullptr)
      throw gguf_error("tensor '" + name + "' has unsupported type " + ggml_type_name(t.type) +
                       " (supported: F32, F16, BF16, Q4_0, Q4_1, Q8_0)");
    row_matrix m(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
    dequantize(t.type, t.data, rows * cols, m.data());
    return m;
  }
  static vector vec(const gguf_file& f, const std::string& name, std::size_t n) {
    const gguf_tensor& t = f.tensor(name);
    if (t.elements != n) throw gguf_error("tensor '" + name + "' has " + std::to_string(t.elements) + " elements, expected " + std::to_string(n));
    if (block_format_of(t.type).elements == 0 || t.data == nullptr)
      throw gguf_error("tensor '" + name + "' has unsupported type " + ggml_type_name(t.type));
    vector v(static_cast<Eigen::Index>(n));
    dequantize(t.type, t.data, n, v.data());
    return v;
  }
};

}  // namespace engine
