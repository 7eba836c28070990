// SPDX-License-Identifier: Apache-2.0
// A problem set for the reasoning evaluation: a JSON Lines file, one problem per line,
//   {"id": "gsm_symbolic-42-0", "prompt": "There are 12 students ...", "answer": "70", "checker": "integer"}
// Every field is a string; other members (a generator's metadata) are allowed and ignored. Blank
// lines are skipped. Anything else (a line that is not one JSON object, a missing or non-string
// field, an unknown checker, an id used twice, no problem at all) is an error naming the file and
// line, raised before any model is loaded.
#pragma once

#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "answer_check.hpp"
#include "json_value.hpp"

namespace llama_infokv {

struct problem {
  std::string id, prompt, answer, checker;
  std::size_t line = 0;  // in the file, from 1
};

class problem_set_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Parses a problem set from its text; `name` labels the errors.
[[nodiscard]] inline std::vector<problem> parse_problem_set(const std::string& text, const std::string& name) {
  std::vector<problem> out;
  std::set<std::string, std::less<>> ids;
  std::istringstream in(text);
  std::string line;
  std::size_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    const std::string where = name + ":" + std::to_string(n) + ": ";
    json_value v;
    try {
      v = parse_json(line);
    } catch (const json_error& e) {
      throw problem_set_error(where + "not JSON (" + e.what() + ")");
    }
    if (!v.is_object()) throw problem_set_error(where + "a problem is one JSON object, not " + v.type_name());
    const json_object& o = v.object();
    problem p;
    p.line = n;
    for (auto [key, field] : {std::pair{"id", &p.id}, std::pair{"prompt", &p.prompt}, std::pair{"answer", &p.answer},
                              std::pair{"checker", &p.checker}}) {
      const auto it = o.find(std::string_view(key));
      if (it == o.end()) throw problem_set_error(where + "no \"" + key + "\" field");
      if (!it->second.is_string())
        throw problem_set_error(where + "\"" + key + "\" must be a string, not " + it->second.type_name());
      *field = it->second.string();
    }
    if (p.id.empty()) throw problem_set_error(where + "an empty \"id\"");
    if (p.prompt.empty()) throw problem_set_error(where + "an empty \"prompt\"");
    if (!is_checker(p.checker)) {
      std::string known;
      for (auto c : checker_names) known += std::string(known.empty() ? "" : ", ") + std::string(c);
      throw problem_set_error(where + "unknown checker '" + p.checker + "' (known: " + known + ")");
    }
    if (!ids.insert(p.id).second) throw problem_set_error(where + "the id '" + p.id + "' is used twice");
    out.push_back(std::move(p));
  }
  if (out.empty()) throw problem_set_error(name + ": no problem in the file");
  return out;
}

[[nodiscard]] inline std::vector<problem> read_problem_set(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw problem_set_error("cannot read the problem set " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_problem_set(ss.str(), path);
}

}  // namespace llama_infokv
