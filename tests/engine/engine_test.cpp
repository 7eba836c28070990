// SPDX-License-Identifier: Apache-2.0
// The example engine on the real model (SmolLM2-135M-Instruct Q4_1, fetched by
// scripts/fetch_model.sh; INFOKV_TEST_MODEL names it), against independent references:
//  * dequantisation: the gguf Python package (tests/data/gguf_dequant_reference.json, written by
//    scripts/reference/gguf_dequant_reference.py), every tensor, bit for bit;
//  * tokenisation: Hugging Face transformers' GGUF tokenizer (tests/data/*.ids.json, written by
//    scripts/reference/tokenizer_reference.py);
//  * perplexity: llama.cpp's llama-perplexity on the same excerpt (scripts/reference/
//    llama_cpp_perplexity.sh printed 19.2579);
// and compress() running inside generation for several policies and granularities, plus the
// file-level bad inputs. Without a model every test skips.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "gguf.hpp"
#include "llama_model.hpp"
#include "policies.hpp"
#include "session.hpp"
#include "tokenizer.hpp"

namespace {

std::string model_path() {
  const char* p = std::getenv("INFOKV_TEST_MODEL");
  return p == nullptr ? std::string() : std::string(p);
}
#define REQUIRE_MODEL()                                                                          \
  if (model_path().empty() || !std::ifstream(model_path()).good())                              \
  GTEST_SKIP() << "INFOKV_TEST_MODEL is not set to a model file (scripts/run_tests.sh fetches it)"

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
std::string data(const std::string& name) { return read(std::string(INFOKV_TEST_DATA_DIR) + "/" + name); }

std::vector<std::int32_t> parse_ids(const std::string& json) {
  std::vector<std::int32_t> out;
  for (std::size_t i = 0; i < json.size();) {
    if (json[i] >= '0' && json[i] <= '9') {
      std::size_t end = i;
      out.push_back(static_cast<std::int32_t>(std::stol(json.substr(i), &end)));
      i += end;
    } else {
      ++i;
    }
  }
  return out;
}

struct shared_model {
  engine::gguf_file file;
  engine::bpe_tokenizer tok;
  engine::llama_model model;
  explicit shared_model(const std::string& p)
      : file(engine::gguf_file::open(p)), tok(file), model(engine::llama_model::load(file)) {}
};
shared_model& loaded() {
  static shared_model m(model_path());
  return m;
}

TEST(EngineModel, FileStructureAndConfigComeFromTheFile) {
  REQUIRE_MODEL();
  const auto& f = loaded().file;
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  std::map<std::string, int> types;
  for (const auto& t : f.tensors()) ++types[engine::ggml_type_name(t.type)];
  EXPECT_EQ(types["Q4_1"], 210);
  EXPECT_EQ(types["F32"], 61);
  EXPECT_EQ(types["Q8_0"], 1);
  const auto& c = loaded().model.config;
  EXPECT_EQ(c.layers, 30u);
  EXPECT_EQ(c.hidden, 576u);
  EXPECT_EQ(c.heads, 9u);
  EXPECT_EQ(c.kv_heads, 3u);
  EXPECT_EQ(c.head_dim, 64u);
  EXPECT_EQ(c.vocab, 49152u);
  EXPECT_EQ(c.context, 8192u);
  EXPECT_DOUBLE_EQ(c.rope_theta, 100000.0);
}

// The engine states the model's RoPE to the library for every policy: the file's theta (1e5
// for SmolLM2, not the 1e4 a default would assume) and adjacent pairs, the pairing
// session::rope applies to GGUF Llama weights.
TEST(EngineModel, EveryPolicyIsToldTheModelsRope) {
  REQUIRE_MODEL();
  const auto& c = loaded().model.config;
  for (const auto& name : engine::policy_names()) {
    if (name == "none") continue;
    engine::compression_options o;
    o.policy = name;
    const auto hook = engine::make_hook(o, c, 512);
    ASSERT_NE(hook, nullptr) << name;
    EXPECT_EQ(hook->config().rope.theta, 100000.0) << name;
    EXPECT_EQ(hook->config().rope.pairing, infokv::rope_pairing::adjacent) << name;
  }
}

TEST(EngineModel, EveryTensorDequantisesBitForBitAsTheGgufPackage) {
  REQUIRE_MODEL();
  const std::string ref = data("gguf_dequant_reference.json");
  // The fixture has one key per line: "name": {, "elements": N, "checksum": "N".
  std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> want;  // name -> (elements, checksum)
  std::string name;
  std::istringstream lines(ref);
  for (std::string line; std::getline(lines, line);) {
    const auto q = line.find("\": {");
    if (q != std::string::npos && line[0] == '"' && line.compare(1, 7, "tensors") != 0) name = line.substr(1, q - 1);
    if (line.rfind("\"elements\": ", 0) == 0) want[name].first = std::stoull(line.substr(12));
    if (line.rfind("\"checksum\": \"", 0) == 0) want[name].second = std::stoull(line.substr(13));
  }
  const auto& f = loaded().file;
  ASSERT_EQ(want.size(), f.tensors().size());
  for (const auto& t : f.tensors()) {
    ASSERT_TRUE(want.count(t.name)) << t.name;
    const std::vector<float> x = engine::dequantize(t);
    ASSERT_EQ(x.size(), want[t.name].first) << t.name;
    std::uint64_t sum = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      std::uint32_t bits;
      std::memcpy(&bits, &x[i], 4);
      sum += static_cast<std::uint64_t>(bits) * (2 * static_cast<std::uint64_t>(i) + 1);
    }
    EXPECT_EQ(sum, want[t.name].second) << t.name << " (" << engine::ggml_type_name(t.type) << ")";
  }
}

TEST(EngineTokenizer, MatchesTheTransformersTokenizerOnAnAustenExcerpt) {
  REQUIRE_MODEL();
  const std::string text = data("pride_and_prejudice_20k.txt");
  const auto want = parse_ids(data("pride_and_prejudice_20k.ids.json"));
  const auto got = loaded().tok.encode(text);
  ASSERT_EQ(want.size(), 5175u);
  EXPECT_EQ(got, want);
  EXPECT_EQ(loaded().tok.decode(got), text);
}

TEST(EngineTokenizer, ChatTemplateMatchesTheReference) {
  REQUIRE_MODEL();
  // transformers' apply_chat_template + encode of [{"role": "user", "content": "Hello"}] with the
  // generation prompt (llama.cpp's llama-tokenize gives the same ids).
  const std::vector<std::int32_t> want = {1,  9690, 198, 2683, 359, 253,   5356, 5646,  11173, 3365, 3511,
                                          308, 34519, 28, 7018,  411, 407,   19712, 8182, 2,     198,  1,
                                          4093, 198,  19556, 2,   198, 1,     520,  9531,  198};
  const auto& tok = loaded().tok;
  EXPECT_EQ(tok.encode(tok.apply_chat_template({{"user", "Hello"}}, true)), want);
}

TEST(EngineTokenizer, RejectsMalformedUtf8) {
  REQUIRE_MODEL();
  const auto& tok = loaded().tok;
  for (const std::string& bad : {std::string("Hello \xff"), std::string("\xc0\xaf"), std::string("a\xed\xa0\x80"),
                                std::string("\xe2\x82"), std::string("\xf4\x90\x80\x80")})
    EXPECT_THROW((void)tok.encode(bad), engine::tokenizer_error);
}

TEST(EngineForward, PerplexityAgreesWithLlamaCppWithinOnePercent) {
  REQUIRE_MODEL();
  const auto ids = loaded().tok.encode(data("pride_and_prejudice_20k.txt"));
  constexpr std::size_t ctx = 512;
  double nll = 0.0;
  std::size_t count = 0;
  for (std::size_t c = 0; c < ids.size() / ctx; ++c) {
    engine::session s(loaded().model, infokv::stream_granularity::per_layer, 64, ctx, nullptr);
    const std::span<const std::int32_t> chunk(ids.data() + c * ctx, ctx);
    const auto& lg = s.forward(chunk, engine::step_kind::decode, true);
    for (std::size_t j = ctx / 2; j + 1 < ctx; ++j) {
      const auto row = lg.row(static_cast<Eigen::Index>(j));
      const float mx = row.maxCoeff();
      nll -= static_cast<double>(row(chunk[j + 1]) - mx) - std::log((row.array() - mx).exp().cast<double>().sum());
      ++count;
    }
  }
  const double ppl = std::exp(nll / static_cast<double>(count));
  constexpr double llama_cpp = 19.2579;  // llama-perplexity -c 512 on the same file (10 chunks)
  std::printf("perplexity %.4f (llama.cpp %.4f, %+.2f%%)\n", ppl, llama_cpp, 100.0 * (ppl / llama_cpp - 1.0));
  EXPECT_EQ(count, 2550u);
  EXPECT_NEAR(ppl, llama_cpp, 0.01 * llama_cpp);
}

TEST(EngineForward, GreedyChatReply) {
  REQUIRE_MODEL();
  const auto& tok = loaded().tok;
  auto ids = tok.encode(tok.apply_chat_template({{"user", "Hello"}}, true));
  engine::session s(loaded().model, infokv::stream_granularity::per_layer, 16, 64, nullptr);
  const engine::row_matrix* lg = &s.forward(ids, engine::step_kind::prefill_last, false);
  std::string reply;
  for (int step = 0; step < 30; ++step) {
    Eigen::Index best;
    lg->row(0).maxCoeff(&best);
    const auto next = static_cast<std::int32_t>(best);
    if (tok.is_control(next)) break;
    reply += tok.decode(next);
    lg = &s.forward(std::span<const std::int32_t>(&next, 1), engine::step_kind::decode, false);
  }
  // The reply an independent NumPy forward pass of the same file produces.
  EXPECT_EQ(reply, "Hello! How can I assist you today?");
}

// compress() inside the engine: teacher-forced decode over the excerpt after a prefill, for
// several policies and granularities; the cache must stay within the budget and pages come back.
struct policy_case {
  const char* policy;
  infokv::stream_granularity g;
};
class EngineCompression : public ::testing::TestWithParam<policy_case> {};

TEST_P(EngineCompression, CacheStaysWithinTheBudgetDuringDecode) {
  REQUIRE_MODEL();
  const auto ids = loaded().tok.encode(data("pride_and_prejudice_20k.txt"));
  engine::compression_options o;
  o.policy = GetParam().policy;
  o.granularity = GetParam().g;
  o.decode_ratio = 0.25;
  o.prefill_ratio = 0.25;
  o.recent_tokens = 32;
  o.slack = 16;
  constexpr std::size_t prompt = 256, steps = 256, total = prompt + steps;
  engine::session s(loaded().model, o.granularity, 16, total, engine::make_hook(o, loaded().model.config, total));
  (void)s.forward(std::span<const std::int32_t>(ids.data(), prompt), engine::step_kind::prefill_last, false);
  const std::size_t after_prefill = s.cache().max_length();
  EXPECT_LE(after_prefill, 4 + 64 + prompt / 4 + 1) << "the prompt is compressed to its budget";
  for (std::size_t i = prompt; i < total; ++i) {
    (void)s.forward(std::span<const std::int32_t>(ids.data() + i, 1), engine::step_kind::decode, false);
    const std::size_t seen = i + 1;
    // Each stream holds at most the protected tokens or the ratio budget, plus the slack.
    ASSERT_LE(s.cache().max_length(), std::max<std::size_t>(4 + 64, seen / 4) + 16 + 1) << "at " << seen;
  }
  EXPECT_GT(s.stats().evictions, 2u);
  EXPECT_GT(s.stats().pages_freed, 0u);
  EXPECT_LT(s.cache().bytes_in_use(), s.cache().full_cache_bytes(total) / 2);
}

INSTANTIATE_TEST_SUITE_P(Policies, EngineCompression,
                         ::testing::Values(policy_case{"infokv", infokv::stream_granularity::per_layer},
                                           policy_case{"infokv", infokv::stream_granularity::per_sequence},
                                           policy_case{"snapkv", infokv::stream_granularity::per_layer_head},
                                           policy_case{"h2o", infokv::stream_granularity::per_layer},
                                           policy_case{"streamingllm", infokv::stream_granularity::per_layer},
                                           policy_case{"expected-attention", infokv::stream_granularity::per_layer}),
                         [](const auto& p) {
                           std::string n = std::string(p.param.policy) + "_" +
                                           std::string(infokv::to_string(p.param.g));
                           for (char& ch : n)
                             if (ch == '-') ch = '_';
                           return n;
                         });

// Corrupt and truncated images of the real file: a gguf_error naming the problem, never a crash.
TEST(EngineBadInput, CorruptFilesGiveClearErrors) {
  REQUIRE_MODEL();
  const std::string raw = read(model_path());
  const auto parse = [](const std::string& img) {
    return engine::gguf_file::parse(std::span<const std::byte>(reinterpret_cast<const std::byte*>(img.data()), img.size()));
  };
  const auto expect_error = [&](const std::string& img, const std::string& words) {
    try {
      const auto f = parse(img);
      (void)engine::llama_model::load(f);
      ADD_FAILURE() << "no error, expected: " << words;
    } catch (const engine::gguf_error& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  const std::size_t data_offset = loaded().file.data_offset();
  for (const std::size_t cut : {std::size_t{0}, std::size_t{3}, std::size_t{10}, std::size_t{100}, std::size_t{100000},
                                data_offset - 1, data_offset + 1000, raw.size() - 1})
    expect_error(raw.substr(0, cut), cut < 4 ? "magic" : "truncated");
  std::string bad = raw;
  bad[0] = 'X';
  expect_error(bad, "not a GGUF file");
  bad = raw;
  bad[4] = 99;
  expect_error(bad, "unsupported GGUF version 99");
  bad = raw;
  bad[8 + 7] = 0x10;  // tensor count 2^60
  expect_error(bad, "exceeds the file");
  bad = raw;
  bad[24 + 7] = 0x40;  // the first key's length: 2^62 bytes
  expect_error(bad, "truncated");
  // The architecture string and one tensor's type, patched in place.
  const std::size_t arch = raw.find("general.architecture");
  ASSERT_NE(arch, std::string::npos);
  bad = raw;
  bad.replace(arch + 20 + 4 + 8, 5, "gpt2x");
  expect_error(bad, "unsupported architecture 'gpt2x'");
  const std::size_t q = raw.find("blk.0.attn_q.weight");
  ASSERT_NE(q, std::string::npos);
  bad = raw;
  const std::size_t type_at = q + 19 + 4 + 2 * 8;  // name, n_dims, two dimensions
  bad[type_at] = 14;                              // Q6_K
  expect_error(bad, "unsupported type Q6_K");
}

// Found by the GGUF fuzzer: a tensor of a type the engine does not read (so the parser never
// bounded its bytes by the file) whose shape asked the model loader for 2 GB before the type
// was checked. The loader now refuses the type first. Needs no model.
TEST(EngineBadInput, UnsupportedTensorTypeIsRefusedBeforeAnyAllocation) {
  const std::string img = read(std::string(INFOKV_TEST_FUZZ_CORPUS) + "/gguf/regression_oom_unknown_type_tensor");
  ASSERT_FALSE(img.empty());
  try {
    const auto f =
        engine::gguf_file::parse(std::span<const std::byte>(reinterpret_cast<const std::byte*>(img.data()), img.size()));
    (void)engine::llama_model::load(f);
    ADD_FAILURE() << "no error";
  } catch (const engine::gguf_error& e) {
    EXPECT_FALSE(std::string(e.what()).empty());
  }
}

}  // namespace
