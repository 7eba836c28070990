// SPDX-License-Identifier: Apache-2.0
// libFuzzer target over the example engine's GGUF reader and everything that reads a parsed
// file: metadata accessors, string and integer arrays, the tokenizer, the Llama config, the
// model loader and dequantisation of every tensor. Any input must end in a parsed file or a
// gguf_error / tokenizer_error with a message: never a crash, never an exception of another
// kind, and (run with -malloc_limit_mb) never an allocation the file's size cannot justify.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>

#include "dequantize.hpp"
#include "gguf.hpp"
#include "llama_model.hpp"
#include "tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto f = engine::gguf_file::parse(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), size));
    for (const auto& [key, value] : f.metadata()) {
      if (value.type == engine::gguf_type::array && value.element_type == engine::gguf_type::string)
        (void)f.get_string_array(key);
      else if (value.type == engine::gguf_type::array && value.element_type != engine::gguf_type::f32 &&
               value.element_type != engine::gguf_type::f64)
        (void)f.get_int_array(key);
    }
    for (const auto& t : f.tensors())
      if (engine::block_format_of(t.type).elements != 0 && t.data != nullptr) (void)engine::dequantize(t);
    try {
      const engine::bpe_tokenizer tok(f);
      const std::string text = "Hello <|im_start|> world 123 \xc3\xa9!";
      const auto ids = tok.encode(text);
      (void)tok.decode(ids);
    } catch (const engine::tokenizer_error&) {
    } catch (const engine::gguf_error&) {
    }
    (void)engine::llama_model::load(f);
  } catch (const engine::gguf_error& e) {
    if (std::string(e.what()).empty()) std::abort();
  } catch (const engine::tokenizer_error& e) {
    if (std::string(e.what()).empty()) std::abort();
  }
  return 0;
}
