// SPDX-License-Identifier: Apache-2.0
// A strict JSON reader (RFC 8259) for the evaluation's input files: one value per call, every
// error reported with its byte offset. Objects keep their members in file order; a repeated key
// is an error, since a problem file with two "answer" fields is ambiguous.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "../common/utf8.hpp"

namespace llama_infokv {

class json_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct json_value;
using json_array = std::vector<json_value>;
using json_object = std::map<std::string, json_value, std::less<>>;

struct json_value {
  std::variant<std::nullptr_t, bool, double, std::string, std::shared_ptr<json_array>, std::shared_ptr<json_object>> v;

  [[nodiscard]] bool is_string() const noexcept { return std::holds_alternative<std::string>(v); }
  [[nodiscard]] bool is_object() const noexcept { return std::holds_alternative<std::shared_ptr<json_object>>(v); }
  [[nodiscard]] const std::string& string() const { return std::get<std::string>(v); }
  [[nodiscard]] const json_object& object() const { return *std::get<std::shared_ptr<json_object>>(v); }
  [[nodiscard]] const char* type_name() const noexcept {
    static constexpr const char* names[] = {"null", "a boolean", "a number", "a string", "an array", "an object"};
    return names[v.index()];
  }
};

namespace json_detail {

class parser {
 public:
  explicit parser(std::string_view text) : s_(text) {}

  json_value document() {
    json_value v = value(0);
    skip_space();
    if (i_ != s_.size()) fail("text after the JSON value");
    return v;
  }

 private:
  static constexpr int max_depth = 64;
  std::string_view s_;
  std::size_t i_ = 0;

  [[noreturn]] void fail(const std::string& why) const {
    throw json_error(why + " at byte " + std::to_string(i_ + 1));
  }
  void skip_space() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  void expect_word(std::string_view w) {
    if (s_.substr(i_, w.size()) != w) fail("invalid literal");
    i_ += w.size();
  }

  json_value value(int depth) {
    skip_space();
    if (i_ >= s_.size()) fail("unexpected end of input");
    const char c = s_[i_];
    if (c == '{') return object(depth);
    if (c == '[') return array(depth);
    if (c == '"') return {string()};
    if (c == 't') { expect_word("true"); return {true}; }
    if (c == 'f') { expect_word("false"); return {false}; }
    if (c == 'n') { expect_word("null"); return {nullptr}; }
    if (c == '-' || (c >= '0' && c <= '9')) return {number()};
    fail(std::string("unexpected character '") + c + "'");
  }

  json_value object(int depth) {
    if (depth >= max_depth) fail("nesting deeper than 64");
    ++i_;
    auto obj = std::make_shared<json_object>();
    skip_space();
    if (i_ < s_.size() && s_[i_] == '}') { ++i_; return {obj}; }
    for (;;) {
      skip_space();
      if (i_ >= s_.size() || s_[i_] != '"') fail("expected a member name");
      std::string key = string();
      skip_space();
      if (i_ >= s_.size() || s_[i_] != ':') fail("expected ':'");
      ++i_;
      json_value v = value(depth + 1);
      if (!obj->emplace(key, std::move(v)).second) fail("repeated member \"" + key + "\"");
      skip_space();
      if (i_ < s_.size() && s_[i_] == ',') { ++i_; continue; }
      if (i_ < s_.size() && s_[i_] == '}') { ++i_; return {obj}; }
      fail("expected ',' or '}'");
    }
  }

  json_value array(int depth) {
    if (depth >= max_depth) fail("nesting deeper than 64");
    ++i_;
    auto arr = std::make_shared<json_array>();
    skip_space();
    if (i_ < s_.size() && s_[i_] == ']') { ++i_; return {arr}; }
    for (;;) {
      arr->push_back(value(depth + 1));
      skip_space();
      if (i_ < s_.size() && s_[i_] == ',') { ++i_; continue; }
      if (i_ < s_.size() && s_[i_] == ']') { ++i_; return {arr}; }
      fail("expected ',' or ']'");
    }
  }

  double number() {
    const std::size_t start = i_;
    if (s_[i_] == '-') ++i_;
    const auto digits = [&] {
      const std::size_t d0 = i_;
      while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
      if (i_ == d0) fail("a digit expected in a number");
    };
    if (i_ < s_.size() && s_[i_] == '0') ++i_; else digits();
    if (i_ < s_.size() && s_[i_] == '.') { ++i_; digits(); }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      digits();
    }
    return std::stod(std::string(s_.substr(start, i_ - start)));
  }

  unsigned hex4() {
    if (i_ + 4 > s_.size()) fail("a short \\u escape");
    unsigned x = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = s_[i_++];
      x <<= 4;
      if (c >= '0' && c <= '9') x |= static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f') x |= static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') x |= static_cast<unsigned>(c - 'A' + 10);
      else fail("a bad hex digit in a \\u escape");
    }
    return x;
  }

  std::string string() {
    ++i_;  // the opening quote
    std::string out;
    for (;;) {
      if (i_ >= s_.size()) fail("unterminated string");
      const char c = s_[i_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("a control character inside a string");
      if (c != '\\') { out += c; continue; }
      if (i_ >= s_.size()) fail("unterminated escape");
      const char e = s_[i_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          std::uint32_t cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00) {  // a high surrogate needs its low half
            if (s_.substr(i_, 2) != "\\u") fail("a lone surrogate in a \\u escape");
            i_ += 2;
            const std::uint32_t lo = hex4();
            if (lo < 0xDC00 || lo >= 0xE000) fail("a lone surrogate in a \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp < 0xE000) {
            fail("a lone surrogate in a \\u escape");
          }
          infokv_examples::append_utf8(out, cp);
          break;
        }
        default: fail(std::string("an unknown escape '\\") + e + "'");
      }
    }
  }
};

}  // namespace json_detail

/// Parses one JSON text; throws json_error naming the byte where it went wrong.
[[nodiscard]] inline json_value parse_json(std::string_view text) { return json_detail::parser(text).document(); }

/// `s` as a JSON string literal (quotes included); bytes >= 0x80 pass through (UTF-8 stays UTF-8).
[[nodiscard]] inline std::string json_quote(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          static constexpr char hex[] = "0123456789abcdef";
          out += "\\u00";
          out += hex[(static_cast<unsigned char>(c) >> 4) & 0xF];
          out += hex[static_cast<unsigned char>(c) & 0xF];
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

}  // namespace llama_infokv
