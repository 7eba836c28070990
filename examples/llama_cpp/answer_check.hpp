// SPDX-License-Identifier: Apache-2.0
// Final answers of a chain of thought: the content of the last \boxed{...} (braces matched), and
// the checkers a problem file may name. The checkers compare values, not spellings: "\$1,250.00",
// "1250" and "\boxed{1250 \text{ dollars}}" all answer 1250. Symbolic answers (fractions of
// pi, intervals, matrices) are out of their reach: a set that needs them needs another checker.
#pragma once

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

namespace llama_infokv {

/// The content of the last complete \boxed{...} in `text` (\fbox{...} when there is none);
/// nullopt if neither.
[[nodiscard]] inline std::optional<std::string> last_boxed(std::string_view text) {
  for (const std::string_view tag : {std::string_view("\\boxed"), std::string_view("\\fbox")}) {
    std::optional<std::string> content;
    for (std::size_t at = 0; (at = text.find(tag, at)) != std::string_view::npos;) {
      std::size_t i = at + tag.size();
      while (i < text.size() && text[i] == ' ') ++i;
      at = i;
      if (i >= text.size() || text[i] != '{') continue;
      int depth = 0;
      std::size_t j = i;
      for (; j < text.size(); ++j) {
        if (text[j] == '{') ++depth;
        else if (text[j] == '}' && --depth == 0) break;
      }
      if (j < text.size()) content = std::string(text.substr(i + 1, j - i - 1));  // the later box wins
    }
    if (content) return content;
  }
  return std::nullopt;
}

/// The checkers a problem file may name.
inline constexpr std::array<std::string_view, 3> checker_names{"integer", "number", "exact"};

[[nodiscard]] inline bool is_checker(std::string_view name) {
  return std::find(checker_names.begin(), checker_names.end(), name) != checker_names.end();
}

namespace answer_detail {

inline void erase_all(std::string& s, std::string_view what) {
  for (std::size_t at; (at = s.find(what)) != std::string::npos;) s.erase(at, what.size());
}

/// LaTeX spacing, dollar signs, \text{...} / \mathrm{...} wrappers and thousands separators
/// removed; \frac{a}{b} / \dfrac{a}{b} written a/b.
inline std::string simplify(std::string_view in) {
  std::string s(in);
  for (const std::string_view w : {"\\left", "\\right", "\\!", "\\,", "\\;", "\\:", "\\$", "$", "\\%", "%", "~"})
    erase_all(s, w);
  for (const std::string_view cmd : {"\\text", "\\textbf", "\\mathrm", "\\mathbf", "\\mbox"}) {
    for (std::size_t at; (at = s.find(std::string(cmd) + "{")) != std::string::npos;) {
      // keep the braces' content: "\text{ dollars}" -> " dollars"
      std::size_t j = at + cmd.size() + 1;
      int depth = 1;
      while (j < s.size() && depth > 0) {
        if (s[j] == '{') ++depth;
        else if (s[j] == '}') --depth;
        if (depth > 0) ++j;
      }
      if (j >= s.size()) break;
      s = s.substr(0, at) + s.substr(at + cmd.size() + 1, j - at - cmd.size() - 1) + s.substr(j + 1);
    }
  }
  for (const std::string_view frac : {"\\dfrac", "\\tfrac", "\\frac"}) {
    for (std::size_t at; (at = s.find(std::string(frac) + "{")) != std::string::npos;) {
      const std::size_t a = at + frac.size() + 1, ae = s.find('}', a);
      if (ae == std::string::npos || ae + 1 >= s.size() || s[ae + 1] != '{') break;
      const std::size_t be = s.find('}', ae + 2);
      if (be == std::string::npos) break;
      s = s.substr(0, at) + "(" + s.substr(a, ae - a) + ")/(" + s.substr(ae + 2, be - ae - 2) + ")" + s.substr(be + 1);
    }
  }
  // 1,250 -> 1250 (a comma between digits, followed by three digits)
  for (std::size_t i = 1; i + 3 < s.size(); ++i) {
    if (s[i] == ',' && std::isdigit(static_cast<unsigned char>(s[i - 1])) &&
        std::isdigit(static_cast<unsigned char>(s[i + 1])) && std::isdigit(static_cast<unsigned char>(s[i + 2])) &&
        std::isdigit(static_cast<unsigned char>(s[i + 3])) &&
        (i + 4 >= s.size() || !std::isdigit(static_cast<unsigned char>(s[i + 4])))) {
      s.erase(i, 1);
    }
  }
  return s;
}

/// The single number `s` states: "-12", "3.5", "(3)/(4)", "x = 7", "7 apples". nullopt when it
/// states none or several different ones ("3 or 4").
inline std::optional<double> single_number(const std::string& s) {
  std::optional<double> value;
  std::size_t i = 0;
  while (i < s.size()) {
    const bool neg = s[i] == '-' && i + 1 < s.size() && std::isdigit(static_cast<unsigned char>(s[i + 1]));
    if (!neg && !std::isdigit(static_cast<unsigned char>(s[i])) && !(s[i] == '.' && i + 1 < s.size() &&
                                                                    std::isdigit(static_cast<unsigned char>(s[i + 1])))) {
      ++i;
      continue;
    }
    // a digit right after a letter belongs to a name (x2), not a value
    if (i > 0 && std::isalpha(static_cast<unsigned char>(s[i - 1]))) {
      while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
      continue;
    }
    char* end = nullptr;
    double x = std::strtod(s.c_str() + i, &end);
    std::size_t j = static_cast<std::size_t>(end - s.c_str());
    // a fraction written (a)/(b) or a/b
    std::size_t k = j;
    while (k < s.size() && (s[k] == ')' || s[k] == ' ')) ++k;
    if (k < s.size() && s[k] == '/') {
      ++k;
      while (k < s.size() && (s[k] == '(' || s[k] == ' ')) ++k;
      char* end2 = nullptr;
      const double d = std::strtod(s.c_str() + k, &end2);
      if (end2 != s.c_str() + k && d != 0.0) {
        x /= d;
        j = static_cast<std::size_t>(end2 - s.c_str());
      }
    }
    if (value && std::abs(*value - x) > 1e-9 * std::max(1.0, std::abs(x))) return std::nullopt;
    value = x;
    i = j;
  }
  return value;
}

inline std::string normalised_text(std::string_view in) {
  std::string s = simplify(in), out;
  for (const char c : s)
    if (!std::isspace(static_cast<unsigned char>(c)) && c != '{' && c != '}') out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  while (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

}  // namespace answer_detail

/// Does `given` (a boxed answer) match `reference` under `checker`? integer: both state the same
/// integer; number: the same value within 1e-6 relative (1e-9 absolute near 0); exact: the same
/// text once LaTeX spacing, wrappers, case and whitespace are dropped.
[[nodiscard]] inline bool answer_matches(std::string_view checker, std::string_view given, std::string_view reference) {
  using namespace answer_detail;
  if (checker == "exact") return normalised_text(given) == normalised_text(reference);
  const auto g = single_number(simplify(given)), r = single_number(simplify(reference));
  if (!g || !r) return false;
  if (checker == "integer") return std::nearbyint(*r) == *r && *g == *r;
  return std::abs(*g - *r) <= std::max(1e-9, 1e-6 * std::abs(*r));
}

}  // namespace llama_infokv
