// SPDX-License-Identifier: Apache-2.0
// The reasoning evaluation's inputs, without a model: the JSON reader, the problem-set file
// format and its errors, \boxed{} extraction and the answer checkers.
#include <gtest/gtest.h>

#include <string>

#include "answer_check.hpp"
#include "json_value.hpp"
#include "problem_set.hpp"

namespace {

using namespace llama_infokv;

TEST(Json, ParsesEveryKindOfValue) {
  const json_value v = parse_json(R"( {"s": "a\"b\\c\u00e9\ud83d\ude00", "n": -12.5e1, "t": true, "z": null,
                                       "a": [1, [2], {}], "o": {"k": "v"}} )");
  ASSERT_TRUE(v.is_object());
  const auto& o = v.object();
  EXPECT_EQ(o.at("s").string(), "a\"b\\c\xc3\xa9\xf0\x9f\x98\x80");
  EXPECT_EQ(std::get<double>(o.at("n").v), -125.0);
  EXPECT_EQ(std::get<bool>(o.at("t").v), true);
  EXPECT_TRUE(std::holds_alternative<std::nullptr_t>(o.at("z").v));
  EXPECT_EQ(std::get<std::shared_ptr<json_array>>(o.at("a").v)->size(), 3u);
  EXPECT_EQ(o.at("o").object().at("k").string(), "v");
}

TEST(Json, RejectsWhatRfc8259Rejects) {
  for (const char* bad : {"", "{", "{\"a\" 1}", "{\"a\": 1,}", "[1,]", "01", "1.", "-", "+1", "\"\\x\"", "\"a",
                          "\"\\ud800\"", "\"\\udc00x\"", "tru", "{\"a\": 1} x", "{\"a\": 1, \"a\": 2}", "\"tab\there\"",
                          "'single'", "NaN"}) {
    EXPECT_THROW((void)parse_json(bad), json_error) << bad;
  }
  const auto nested = [](std::size_t n) { return std::string(n, '[') + std::string(n, ']'); };
  EXPECT_NO_THROW((void)parse_json(nested(64)));
  EXPECT_THROW((void)parse_json(nested(65)), json_error);
}

TEST(Json, QuoteRoundTrips) {
  const std::string s = "line\nnext \"quoted\" back\\slash \x01 tab\t\xc3\xa9";
  EXPECT_EQ(parse_json(json_quote(s)).string(), s);
}

TEST(ProblemSet, ReadsFieldsAndSkipsBlankLines) {
  const auto ps = parse_problem_set(
      "{\"id\": \"p1\", \"prompt\": \"What is 2+3?\", \"answer\": \"5\", \"checker\": \"integer\", \"source\": {\"x\": 1}}\n"
      "\n"
      "{\"checker\": \"exact\", \"answer\": \"00:34:28\", \"prompt\": \"How long?\", \"id\": \"p2\"}\r\n",
      "set");
  ASSERT_EQ(ps.size(), 2u);
  EXPECT_EQ(ps[0].id, "p1");
  EXPECT_EQ(ps[0].answer, "5");
  EXPECT_EQ(ps[1].checker, "exact");
  EXPECT_EQ(ps[1].line, 3u);
}

void expect_error(const std::string& text, const std::string& fragment) {
  try {
    (void)parse_problem_set(text, "set.jsonl");
    ADD_FAILURE() << "no error for: " << text;
  } catch (const problem_set_error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(ProblemSet, EveryMalformedFileIsOneErrorNamingTheLine) {
  const std::string ok = R"({"id": "a", "prompt": "p", "answer": "1", "checker": "integer"})";
  expect_error("", "no problem in the file");
  expect_error("\n \n", "no problem in the file");
  expect_error(ok + "\n{\"id\": \"b\"", "set.jsonl:2: not JSON");
  expect_error("[1, 2]", "set.jsonl:1: a problem is one JSON object, not an array");
  expect_error(R"({"id": "a", "prompt": "p", "answer": "1"})", "no \"checker\" field");
  expect_error(R"({"id": "a", "prompt": "p", "answer": 1, "checker": "integer"})", "\"answer\" must be a string, not a number");
  expect_error(R"({"id": "a", "prompt": "p", "answer": "1", "checker": "sympy"})", "unknown checker 'sympy' (known: integer, number, exact)");
  expect_error(ok + "\n" + ok, "set.jsonl:2: the id 'a' is used twice");
  expect_error(R"({"id": "", "prompt": "p", "answer": "1", "checker": "integer"})", "an empty \"id\"");
  expect_error(R"({"id": "a", "prompt": "", "answer": "1", "checker": "integer"})", "an empty \"prompt\"");
  EXPECT_THROW((void)read_problem_set("/nonexistent/set.jsonl"), problem_set_error);
}

TEST(Boxed, TakesTheLastCompleteBoxWithNestedBraces) {
  EXPECT_EQ(last_boxed("so \\boxed{12} then \\boxed{\\frac{3}{4}}."), "\\frac{3}{4}");
  EXPECT_EQ(last_boxed("\\boxed {7} and an unclosed \\boxed{8"), "7");
  EXPECT_EQ(last_boxed("\\fbox{5}"), "5");
  EXPECT_EQ(last_boxed("\\boxed{4} \\fbox{5}"), "4");
  EXPECT_FALSE(last_boxed("the answer is 5").has_value());
  EXPECT_FALSE(last_boxed("\\boxed").has_value());
  EXPECT_FALSE(last_boxed("\\boxed{").has_value());
}

TEST(Checkers, IntegerComparesValuesNotSpellings) {
  EXPECT_TRUE(answer_matches("integer", "1,250", "1250"));
  EXPECT_TRUE(answer_matches("integer", "\\$1250", "1250"));
  EXPECT_TRUE(answer_matches("integer", "1250 \\text{ dollars}", "1250"));
  EXPECT_TRUE(answer_matches("integer", "1250.0", "1250"));
  EXPECT_TRUE(answer_matches("integer", "x = -4", "-4"));
  EXPECT_TRUE(answer_matches("integer", "\\frac{8}{2}", "4"));
  EXPECT_FALSE(answer_matches("integer", "1251", "1250"));
  EXPECT_FALSE(answer_matches("integer", "3 or 4", "4"));
  EXPECT_FALSE(answer_matches("integer", "no idea", "4"));
  EXPECT_FALSE(answer_matches("integer", "4.5", "4"));
  EXPECT_FALSE(answer_matches("integer", "4", "4.5"));  // a non-integer reference is never an integer answer
  EXPECT_FALSE(answer_matches("integer", "1.5T + 24", "411"));
  EXPECT_FALSE(answer_matches("integer", "x_2 = 7", "2"));
}

TEST(Checkers, NumberAllowsRoundingAndFractions) {
  EXPECT_TRUE(answer_matches("number", "0.75", "3/4"));
  EXPECT_TRUE(answer_matches("number", "\\dfrac{3}{4}", "0.75"));
  EXPECT_TRUE(answer_matches("number", "2.0000001", "2"));
  EXPECT_TRUE(answer_matches("number", "50\\%", "50"));
  EXPECT_FALSE(answer_matches("number", "0.76", "0.75"));
}

TEST(Checkers, ExactIgnoresSpacingCaseAndWrappers) {
  EXPECT_TRUE(answer_matches("exact", "\\text{00:34:28}", "00:34:28"));
  EXPECT_TRUE(answer_matches("exact", " Yes. ", "yes"));
  EXPECT_FALSE(answer_matches("exact", "00:34:29", "00:34:28"));
  EXPECT_FALSE(answer_matches("exact", "no", "yes"));
}

}  // namespace
