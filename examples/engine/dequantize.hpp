// SPDX-License-Identifier: Apache-2.0
// Dequantisation of the ggml block formats the engine supports to float, following the GGUF
// specification's block layouts (all little-endian):
//   F32, F16, BF16: one value per element;
//   Q4_0: 32 values in 18 bytes = f16 scale d, 16 bytes of nibbles; x = d * (q - 8);
//   Q4_1: 32 values in 20 bytes = f16 d, f16 min m, 16 bytes of nibbles; x = d * q + m;
//   Q8_0: 32 values in 34 bytes = f16 d, 32 int8; x = d * q.
// In the 4-bit formats byte j holds element j in its low nibble and element j + 16 in its high one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include <infokv/element_types.hpp>

#include "gguf.hpp"

namespace engine {

namespace detail {
inline float f16_at(const std::byte* p) {
  std::uint16_t b;
  std::memcpy(&b, p, 2);
  return infokv::to_float(infokv::half{b});
}
}  // namespace detail

/// Dequantises `count` elements starting at element 0 of `data` (a whole number of blocks).
inline void dequantize(std::uint32_t type, const std::byte* data, std::size_t count, float* out) {
  switch (static_cast<ggml_type>(type)) {
    case ggml_type::f32:
      std::memcpy(out, data, count * sizeof(float));
      return;
    case ggml_type::f16:
      for (std::size_t i = 0; i < count; ++i) out[i] = detail::f16_at(data + 2 * i);
      return;
    case ggml_type::bf16:
      for (std::size_t i = 0; i < count; ++i) {
        std::uint16_t b;
        std::memcpy(&b, data + 2 * i, 2);
        out[i] = infokv::to_float(infokv::bfloat16{b});
      }
      return;
    case ggml_type::q4_0:
      for (std::size_t blk = 0; blk < count / 32; ++blk) {
        const std::byte* b = data + blk * 18;
        const float d = detail::f16_at(b);
        for (int j = 0; j < 16; ++j) {
          const auto q = static_cast<std::uint8_t>(b[2 + j]);
          out[blk * 32 + static_cast<std::size_t>(j)] = d * static_cast<float>((q & 15) - 8);
          out[blk * 32 + 16 + static_cast<std::size_t>(j)] = d * static_cast<float>((q >> 4) - 8);
        }
      }
      return;
    case ggml_type::q4_1:
      for (std::size_t blk = 0; blk < count / 32; ++blk) {
        const std::byte* b = data + blk * 20;
        const float d = detail::f16_at(b), m = detail::f16_at(b + 2);
        for (int j = 0; j < 16; ++j) {
          const auto q = static_cast<std::uint8_t>(b[4 + j]);
          out[blk * 32 + static_cast<std::size_t>(j)] = d * static_cast<float>(q & 15) + m;
          out[blk * 32 + 16 + static_cast<std::size_t>(j)] = d * static_cast<float>(q >> 4) + m;
        }
      }
      return;
    case ggml_type::q8_0:
      for (std::size_t blk = 0; blk < count / 32; ++blk) {
        const std::byte* b = data + blk * 34;
        const float d = detail::f16_at(b);
        for (int j = 0; j < 32; ++j)
          out[blk * 32 + static_cast<std::size_t>(j)] = d * static_cast<float>(static_cast<std::int8_t>(b[2 + j]));
      }
      return;
    default:
      throw gguf_error("unsupported tensor type " + ggml_type_name(type) +
                       " (supported: F32, F16, BF16, Q4_0, Q4_1, Q8_0)");
  }
}

/// The whole tensor as float, row-major with ne[0] contiguous.
[[nodiscard]] inline std::vector<float> dequantize(const gguf_tensor& t) {
  if (block_format_of(t.type).elements == 0 || t.data == nullptr)
    throw gguf_error("tensor '" + t.name + "' has unsupported type " + ggml_type_name(t.type) +
                     " (supported: F32, F16, BF16, Q4_0, Q4_1, Q8_0)");
  std::vector<float> out(static_cast<std::size_t>(t.elements));
  dequantize(t.type, t.data, out.size(), out.data());
  return out;
}

}  // namespace engine
