// SPDX-License-Identifier: Apache-2.0
// The byte-level BPE tokenizer of GPT-2-style GGUF models (tokenizer.ggml.model = "gpt2"): the
// vocabulary, merges and token types from the file; control tokens matched literally first;
// the pre-tokenizer named by tokenizer.ggml.pre ("smollm": every digit alone, then the GPT-2
// pattern; "gpt2": the GPT-2 pattern), written out by hand over Unicode categories; merges by
// rank; and the ChatML chat template with the default system message the file's template holds.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "../common/utf8.hpp"
#include "gguf.hpp"
#include "unicode_tables.hpp"

namespace engine {

struct tokenizer_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace unicode {

template <std::size_t N>
[[nodiscard]] bool in_ranges(const code_point_range (&r)[N], std::uint32_t cp) noexcept {
  const auto it = std::upper_bound(std::begin(r), std::end(r), cp,
                                   [](std::uint32_t c, const code_point_range& x) { return c < x.first; });
  return it != std::begin(r) && cp <= (it - 1)->last;
}
[[nodiscard]] inline bool is_letter(std::uint32_t cp) noexcept { return in_ranges(letter_ranges, cp); }
[[nodiscard]] inline bool is_number(std::uint32_t cp) noexcept { return in_ranges(number_ranges, cp); }
/// The Unicode White_Space property.
[[nodiscard]] inline bool is_space(std::uint32_t cp) noexcept {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

/// Decodes UTF-8 into code points and the byte offset of each (offsets has one more entry: the
/// end). Malformed input (overlong forms, surrogates, truncated sequences, > U+10FFFF) throws,
/// naming the byte offset.
inline void decode_utf8(std::string_view s, std::vector<std::uint32_t>& cps, std::vector<std::size_t>& offsets) {
  cps.clear();
  offsets.clear();
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::uint32_t cp = 0;
    std::size_t len = 0;
    if (c < 0x80) {
      cp = c;
      len = 1;
    } else if ((c & 0xE0) == 0xC0) {
      cp = c & 0x1Fu;
      len = 2;
    } else if ((c & 0xF0) == 0xE0) {
      cp = c & 0x0Fu;
      len = 3;
    } else if ((c & 0xF8) == 0xF0) {
      cp = c & 0x07u;
      len = 4;
    } else {
      throw tokenizer_error("invalid UTF-8 at byte " + std::to_string(i));
    }
    if (i + len > s.size()) throw tokenizer_error("truncated UTF-8 sequence at byte " + std::to_string(i));
    for (std::size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) throw tokenizer_error("invalid UTF-8 at byte " + std::to_string(i + k));
      cp = (cp << 6) | (cc & 0x3Fu);
    }
    static constexpr std::uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      throw tokenizer_error("invalid UTF-8 at byte " + std::to_string(i));
    cps.push_back(cp);
    offsets.push_back(i);
    i += len;
  }
  offsets.push_back(s.size());
}

using infokv_examples::append_utf8;

}  // namespace unicode

struct chat_message {
  std::string role;
  std::string content;
};

class bpe_tokenizer {
 public:
  explicit bpe_tokenizer(const gguf_file& f) {
    const std::string model = f.get_string("tokenizer.ggml.model");
    if (model != "gpt2")
      throw tokenizer_error("unsupported tokenizer model '" + model + "' (supported: gpt2 byte-level BPE)");
    pre_ = f.get_string("tokenizer.ggml.pre", "gpt2");
    if (pre_ != "smollm" && pre_ != "gpt2")
      throw tokenizer_error("unsupported pre-tokenizer '" + pre_ + "' (supported: smollm, gpt2)");
    tokens_ = f.get_string_array("tokenizer.ggml.tokens");
    const auto types = f.find("tokenizer.ggml.token_type") ? f.get_int_array("tokenizer.ggml.token_type")
                                                           : std::vector<std::int64_t>{};
    if (!types.empty() && types.size() != tokens_.size())
      throw tokenizer_error("tokenizer.ggml.token_type has " + std::to_string(types.size()) + " entries for " +
                            std::to_string(tokens_.size()) + " tokens");
    for (std::size_t i = 0; i < tokens_.size(); ++i) {
      ids_.emplace(tokens_[i], static_cast<std::int32_t>(i));
      if (!types.empty() && (types[i] == 3 || types[i] == 4)) specials_.push_back(static_cast<std::int32_t>(i));
    }
    // Longest first, so one control token that is a prefix of another never wins.
    std::sort(specials_.begin(), specials_.end(),
              [&](std::int32_t a, std::int32_t b) { return tokens_[static_cast<std::size_t>(a)].size() > tokens_[static_cast<std::size_t>(b)].size(); });
    const auto merges = f.get_string_array("tokenizer.ggml.merges");
    for (std::size_t r = 0; r < merges.size(); ++r) ranks_.emplace(merges[r], static_cast<std::int32_t>(r));
    bos_ = static_cast<std::int32_t>(f.get_uint("tokenizer.ggml.bos_token_id", 0));
    eos_ = static_cast<std::int32_t>(f.get_uint("tokenizer.ggml.eos_token_id", 0));
    add_bos_ = f.get_bool("tokenizer.ggml.add_bos_token", false);
    chat_template_ = f.get_string("tokenizer.chat_template", "");
    // GPT-2's byte <-> printable code point map.
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      byte_to_cp_[b] = printable ? static_cast<std::uint32_t>(b) : static_cast<std::uint32_t>(256 + extra++);
      cp_to_byte_[byte_to_cp_[b]] = static_cast<std::uint8_t>(b);
    }
  }

  [[nodiscard]] std::size_t vocab_size() const noexcept { return tokens_.size(); }
  [[nodiscard]] std::int32_t bos() const noexcept { return bos_; }
  [[nodiscard]] std::int32_t eos() const noexcept { return eos_; }
  [[nodiscard]] bool add_bos() const noexcept { return add_bos_; }
  [[nodiscard]] const std::string& token_text(std::int32_t id) const { return tokens_.at(static_cast<std::size_t>(id)); }
  [[nodiscard]] bool is_control(std::int32_t id) const {
    return std::find(specials_.begin(), specials_.end(), id) != specials_.end();
  }

  /// Token ids of UTF-8 text; control-token text becomes that token. Invalid UTF-8 throws.
  [[nodiscard]] std::vector<std::int32_t> encode(std::string_view text) const {
    std::vector<std::int32_t> out;
    std::size_t start = 0;
    for (std::size_t i = 0; i < text.size();) {
      std::int32_t hit = -1;
      if (text[i] == '<' || text[i] == '[') {
        for (std::int32_t s : specials_) {
          const std::string& t = tokens_[static_cast<std::size_t>(s)];
          if (!t.empty() && text.compare(i, t.size(), t) == 0) {
            hit = s;
            break;
          }
        }
      }
      if (hit < 0) {
        ++i;
        continue;
      }
      encode_plain(text.substr(start, i - start), out);
      out.push_back(hit);
      i += tokens_[static_cast<std::size_t>(hit)].size();
      start = i;
    }
    encode_plain(text.substr(start), out);
    return out;
  }

  /// The bytes a token stands for (control tokens: their text).
  [[nodiscard]] std::string decode(std::int32_t id) const {
    const std::string& t = token_text(id);
    if (is_control(id)) return t;
    std::vector<std::uint32_t> cps;
    std::vector<std::size_t> offs;
    unicode::decode_utf8(t, cps, offs);
    std::string out;
    for (std::uint32_t cp : cps) {
      const auto it = cp_to_byte_.find(cp);
      if (it == cp_to_byte_.end()) {
        unicode::append_utf8(out, cp);
      } else {
        out += static_cast<char>(it->second);
      }
    }
    return out;
  }
  [[nodiscard]] std::string decode(const std::vector<std::int32_t>& ids) const {
    std::string out;
    for (std::int32_t id : ids) out += decode(id);
    return out;
  }

  /// The ChatML rendering of the file's chat template: the default system message the template
  /// adds when the conversation does not start with one, then one <|im_start|>role ... <|im_end|>
  /// block per message, and the assistant header when `add_generation_prompt`.
  [[nodiscard]] std::string apply_chat_template(const std::vector<chat_message>& messages,
                                                bool add_generation_prompt) const {
    if (chat_template_.find("<|im_start|>") == std::string::npos)
      throw tokenizer_error("the model's chat template is not ChatML (the only template this engine renders)");
    std::string out;
    const std::string sys_open = "<|im_start|>system\n";
    if (const auto p = chat_template_.find(sys_open); p != std::string::npos && (messages.empty() || messages[0].role != "system")) {
      const auto e = chat_template_.find("<|im_end|>", p);
      if (e != std::string::npos) out += chat_template_.substr(p, e - p) + "<|im_end|>\n";
    }
    for (const auto& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
    if (add_generation_prompt) out += "<|im_start|>assistant\n";
    return out;
  }

 private:
  // Pre-tokenizes plain text (no control tokens) and appends the BPE ids of every piece.
  void encode_plain(std::string_view text, std::vector<std::int32_t>& out) const {
    if (text.empty()) return;
    std::vector<std::uint32_t> cps;
    std::vector<std::size_t> offs;
    unicode::decode_utf8(text, cps, offs);
    const auto emit = [&](std::size_t a, std::size_t b) {  // code points [a, b)
      if (a < b) bpe(text.substr(offs[a], offs[b] - offs[a]), out);
    };
    if (pre_ == "smollm") {
      // Stage 1: every \p{N} code point is a piece of its own; stage 2 runs on the rest.
      std::size_t a = 0;
      for (std::size_t i = 0; i < cps.size(); ++i) {
        if (!unicode::is_number(cps[i])) continue;
        gpt2_split(cps, a, i, emit);
        emit(i, i + 1);
        a = i + 1;
      }
      gpt2_split(cps, a, cps.size(), emit);
    } else {
      gpt2_split(cps, 0, cps.size(), emit);
    }
  }

  // The GPT-2 pattern over cps[a, b):
  //   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  template <class Emit>
  static void gpt2_split(const std::vector<std::uint32_t>& c, std::size_t a, std::size_t b, Emit&& emit) {
    using namespace unicode;
    const auto other = [](std::uint32_t x) { return !is_space(x) && !is_letter(x) && !is_number(x); };
    std::size_t i = a;
    while (i < b) {
      if (c[i] == '\'' && i + 1 < b) {
        const std::uint32_t n1 = c[i + 1], n2 = i + 2 < b ? c[i + 2] : 0;
        if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') {
          emit(i, i + 2);
          i += 2;
          continue;
        }
        if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l')) {
          emit(i, i + 3);
          i += 3;
          continue;
        }
      }
      const std::size_t j = (c[i] == ' ' && i + 1 < b) ? i + 1 : i;  // the optional leading space
      if (is_letter(c[j]) || is_number(c[j]) || other(c[j])) {
        bool (*cls)(std::uint32_t) = is_letter(c[j]) ? +[](std::uint32_t x) { return is_letter(x); }
                                         : is_number(c[j]) ? +[](std::uint32_t x) { return is_number(x); }
                                                           : +[](std::uint32_t x) { return !is_space(x) && !is_letter(x) && !is_number(x); };
        std::size_t k = j + 1;
        while (k < b && cls(c[k])) ++k;
        emit(i, k);
        i = k;
        continue;
      }
      // Whitespace: the run, minus its last code point when a non-space follows (\s+(?!\S)),
      // or a single code point (\s+).
      std::size_t k = i;
      while (k < b && is_space(c[k])) ++k;
      if (k < b && k - i > 1) --k;
      emit(i, k);
      i = k;
    }
  }

  // Byte-level BPE of one piece: bytes -> printable code points, merges by rank, then ids.
  void bpe(std::string_view piece, std::vector<std::int32_t>& out) const {
    if (const auto it = cache_.find(std::string(piece)); it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
    std::vector<std::string> sym;
    for (const char ch : piece) {
      std::string s;
      unicode::append_utf8(s, byte_to_cp_[static_cast<unsigned char>(ch)]);
      sym.push_back(std::move(s));
    }
    while (sym.size() > 1) {
      std::int32_t best = std::numeric_limits<std::int32_t>::max();
      std::size_t at = 0;
      for (std::size_t i = 0; i + 1 < sym.size(); ++i) {
        const auto it = ranks_.find(sym[i] + " " + sym[i + 1]);
        if (it != ranks_.end() && it->second < best) {
          best = it->second;
          at = i;
        }
      }
      if (best == std::numeric_limits<std::int32_t>::max()) break;
      sym[at] += sym[at + 1];
      sym.erase(sym.begin() + static_cast<std::ptrdiff_t>(at) + 1);
    }
    std::vector<std::int32_t> ids;
    for (const auto& s : sym) {
      const auto it = ids_.find(s);
      if (it == ids_.end()) throw tokenizer_error("BPE produced a symbol outside the vocabulary");
      ids.push_back(it->second);
    }
    out.insert(out.end(), ids.begin(), ids.end());
    if (cache_.size() < 200000) cache_.emplace(std::string(piece), std::move(ids));
  }

  std::string pre_;
  std::vector<std::string> tokens_;
  std::unordered_map<std::string, std::int32_t> ids_;
  std::unordered_map<std::string, std::int32_t> ranks_;
  std::vector<std::int32_t> specials_;
  std::int32_t bos_ = 0, eos_ = 0;
  bool add_bos_ = false;
  std::string chat_template_;
  std::uint32_t byte_to_cp_[256] = {};
  std::unordered_map<std::uint32_t, std::uint8_t> cp_to_byte_;
  mutable std::unordered_map<std::string, std::vector<std::int32_t>> cache_;
};

}  // namespace engine
