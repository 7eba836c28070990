// SPDX-License-Identifier: Apache-2.0
// The example engine on the real model (SmolLM2-135M-Instruct Q4_1, fetched by
// scripts/fetch_model.sh; INFOKV_TEST_MODEL names it), against independent references:
//  * dequantisation: the gguf Python package (tests/data/gguf_dequant_reference.json, written by
//    scripts/reference/gguf_dequant_reference.py), every tensor, bit for bit;
//  * tokenisation: Hugging Face transformers' GGUF tokenizer (tests/data/*.ids.json, written by
//    scripts/reference/tokenizer_reference.py);
//  * perplexity: llama.cpp's llama-perplexity on the same excerpt (scripts/reference/
//    llama_cpp_perplexity.sh printed 19.2579);
// and compress() running inside generation for every policy of the registry and several
// granularities, attention rows handed to the library in pieces against whole steps, plus the
// file-level bad inputs. Without a model the model tests skip.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "attention_rows.hpp"
#include "eval/fanout_hook.hpp"
#include "gguf.hpp"
#include "llama_model.hpp"
#include "policy_registry.hpp"
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
  for (const auto& e : engine::policy_registry) {
    if (e.build == nullptr) continue;
    engine::compression_options o;
    o.policy = std::string(e.name);
    const auto hook = engine::make_hook(o, c, 512);
    ASSERT_NE(hook, nullptr) << e.name;
    EXPECT_EQ(hook->config().rope.theta, 100000.0) << e.name;
    EXPECT_EQ(hook->config().rope.pairing, infokv::rope_pairing::adjacent) << e.name;
  }
}

// What the registry states about a policy is what the library and the hook do: the signals it
// asks the engine for, and the settings that are refused.
TEST(EngineModel, TheRegistryAgreesWithTheLibrary) {
  REQUIRE_MODEL();
  const auto& c = loaded().model.config;
  for (const auto& e : engine::policy_registry) {
    engine::compression_options o;
    o.policy = std::string(e.name);
    if (e.build == nullptr) {
      EXPECT_EQ(engine::make_hook(o, c, 512), nullptr) << e.name;
      EXPECT_EQ(e.family, engine::policy_family::full) << e.name;
      continue;
    }
    const auto hook = engine::make_hook(o, c, 512);
    EXPECT_EQ(hook->required().contains(infokv::signal::attention), e.attention_rows) << e.name;
    const auto refused = [&](auto set) {
      engine::compression_options x = o;
      set(x);
      try {
        (void)engine::make_hook(x, c, 512);
        return false;
      } catch (const std::invalid_argument&) {
        return true;
      }
    };
    EXPECT_EQ(refused([](auto& x) { x.kernel = 5; }), !e.window_options) << e.name;
    EXPECT_EQ(refused([](auto& x) { x.window = 32; }), !e.window_options) << e.name;
    EXPECT_EQ(refused([](auto& x) { x.mean_attention = true; }), !e.mean_option) << e.name;
    EXPECT_EQ(refused([](auto& x) { x.invert = true; }), !e.uniform_budget) << e.name;
  }
  engine::compression_options unknown;
  unknown.policy = "nope";
  EXPECT_THROW((void)engine::make_hook(unknown, c, 512), std::invalid_argument);
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

// compress() inside the engine: teacher-forced decode over the excerpt after a prefill, for every
// policy of the registry (a new row is tested without touching this file) and more
// granularities; the cache must stay within the budget and pages come back.
struct policy_case {
  std::string policy;
  infokv::stream_granularity g;
};
void PrintTo(const policy_case& c, std::ostream* os) { *os << c.policy << "@" << infokv::to_string(c.g); }

std::vector<policy_case> registry_cases() {
  std::vector<policy_case> out;
  for (const auto& e : engine::policy_registry)
    if (e.build != nullptr) out.push_back({std::string(e.name), infokv::stream_granularity::per_layer});
  out.push_back({"infokv", infokv::stream_granularity::per_sequence});
  out.push_back({"snapkv", infokv::stream_granularity::per_layer_head});
  return out;
}

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
  // Uniform budgets hold every stream to the budget; the pyramid and InfoKV's adaptive budgets
  // move tokens between layers and hold the sum over the streams (the mean) to it.
  const bool uniform = engine::find_policy(o.policy)->uniform_budget;
  constexpr std::size_t prompt = 256, steps = 128, total = prompt + steps;
  engine::session s(loaded().model, o.granularity, 16, total, engine::make_hook(o, loaded().model.config, total));
  const auto held = [&] {
    return uniform ? s.cache().max_length() : s.cache().tokens_held() / s.cache().num_streams();
  };
  (void)s.forward(std::span<const std::int32_t>(ids.data(), prompt), engine::step_kind::prefill_last, false);
  EXPECT_LE(held(), 4 + 64 + prompt / 4 + 1) << "the prompt is compressed to its budget";
  for (std::size_t i = prompt; i < total; ++i) {
    (void)s.forward(std::span<const std::int32_t>(ids.data() + i, 1), engine::step_kind::decode, false);
    const std::size_t seen = i + 1;
    // Each stream holds at most the protected tokens or the ratio budget, plus the slack.
    ASSERT_LE(held(), std::max<std::size_t>(4 + 64, seen / 4) + 16 + 1) << "at " << seen;
  }
  EXPECT_GT(s.stats().evictions, 2u);
  EXPECT_GT(s.stats().pages_freed, 0u);
  EXPECT_LT(s.cache().bytes_in_use(), s.cache().full_cache_bytes(total) / 2);
}

INSTANTIATE_TEST_SUITE_P(Policies, EngineCompression, ::testing::ValuesIn(registry_cases()),
                         [](const auto& p) {
                           std::string n = p.param.policy + "_" + std::string(infokv::to_string(p.param.g));
                           for (char& ch : n)
                             if (ch == '-') ch = '_';
                           return n;
                         });

// Where a step's attention rows are cut into pieces: the piece starts that keep the rows
// bit-identical, the query window, and the byte cap.
TEST(EngineAttentionRows, PieceBoundsKeepAlignmentWindowAndCap) {
  constexpr std::array<std::size_t, 6> groups = {1, 2, 3, 4, 7, 8};
  constexpr std::array<std::size_t, 3> windows = {0, 1, 64};
  constexpr std::array<std::size_t, 5> caps = {0, 1, 50, 100, 1000};
  for (const std::size_t G : groups)
    for (const std::size_t window : windows)
      for (const std::size_t per_token_cap : caps)
        for (std::size_t n = 1; n <= 700; n += (n < 130 ? 1 : 37)) {
          const std::size_t bpt = 1000, cap = per_token_cap * bpt;
          const auto b = engine::attention_piece_bounds(n, bpt, cap, G, window);
          const std::size_t granule = 48 / std::gcd<std::size_t>(48, G);
          const std::string at = "G " + std::to_string(G) + " window " + std::to_string(window) + " cap " +
                                 std::to_string(per_token_cap) + " n " + std::to_string(n);
          ASSERT_GE(b.size(), 2u) << at;
          EXPECT_EQ(b.front(), 0u) << at;
          EXPECT_EQ(b.back(), n) << at;
          for (std::size_t i = 0; i + 1 < b.size(); ++i) {
            const std::size_t len = b[i + 1] - b[i];
            ASSERT_GT(len, 0u) << at;
            EXPECT_EQ(b[i] % granule, 0u) << at;
            const std::size_t shortest_tail = std::max<std::size_t>(window, G == 1 ? 2 : 1);
            if (b.size() > 2) {
              EXPECT_GE(len, shortest_tail) << at;
            }
            // Within the cap whenever the cap holds a tail that joins its piece.
            if (per_token_cap >= (std::max<std::size_t>(window, 1) + granule - 1) / granule * granule + shortest_tail) {
              EXPECT_LE(len, per_token_cap) << at;
            }
          }
        }
}

// The cache as it stood before the newest slots: lengths and pages.
TEST(EngineAttentionRows, ViewWithoutTheNewestSlots) {
  engine::llama_config c;
  c.layers = 2;
  c.kv_heads = 2;
  c.head_dim = 4;
  engine::cache_type cache(c, infokv::stream_granularity::per_layer, 4, 64);
  cache.reserve(10, 0);
  cache.reserve(7, 10);
  const auto v = cache.view();
  engine::truncated_table t;
  for (const std::size_t drop : std::array<std::size_t, 5>{0, 1, 5, 7, 16}) {
    const auto tv = engine::view_without_newest(v, drop, t);
    for (std::size_t s = 0; s < v.num_streams(); ++s) {
      ASSERT_EQ(tv.stream_length(s), 17 - drop);
      EXPECT_EQ(tv.stream_num_pages(s), (17 - drop + 3) / 4);
      for (std::size_t i = 0; i < tv.stream_num_pages(s); ++i) EXPECT_EQ(tv.stream_page(s, i), v.stream_page(s, i));
    }
  }
}

// H2O's attention rows handed over in pieces (attention_rows.hpp: the engine recomputes the
// rows of each piece after the forward pass) leave the library exactly where whole steps do:
// the same sequence state bit for bit (accumulated attention included), the same keep sets and
// the same logits, through an eviction at the end of the prompt and a long decode step over the
// evicted cache, at every granularity, with H2O's mean too. A cap of one byte cuts every step
// into pieces of one alignment granule (16 tokens for this model's 3 query heads per KV head).
TEST(EngineAttentionRows, PiecesLeaveTheSameStateAsWholeSteps) {
  REQUIRE_MODEL();
  const auto ids = loaded().tok.encode(data("pride_and_prejudice_20k.txt"));
  const auto& model = loaded().model;
  const std::pair<infokv::stream_granularity, bool> cases[] = {{infokv::stream_granularity::per_layer, false},
                                                               {infokv::stream_granularity::per_sequence, true},
                                                               {infokv::stream_granularity::per_layer_head, false}};
  for (const auto& c : cases) {
    const infokv::stream_granularity g = c.first;  // not a structured binding: lambdas capture it
    const bool mean = c.second;
    engine::compression_options o;
    o.policy = "h2o";
    o.granularity = g;
    o.mean_attention = mean;
    o.decode_ratio = 0.25;
    o.prefill_ratio = 0.25;
    o.recent_tokens = 32;
    o.slack = 16;
    constexpr std::size_t total = 340;
    struct outcome {
      infokv::sequence_state state;
      std::vector<std::vector<std::int32_t>> keep;
      engine::row_matrix logits;
    };
    const auto run = [&](std::size_t cap) {
      engine::session s(model, g, 16, total, engine::make_hook(o, model.config, total));
      s.set_attention_row_bytes(cap);
      const auto step = [&](std::size_t from, std::size_t to, engine::step_kind k) {
        return s.forward(std::span<const std::int32_t>(ids.data() + from, to - from), k, true);
      };
      (void)step(0, 130, engine::step_kind::prefill_chunk);
      (void)step(130, 211, engine::step_kind::prefill_last);
      outcome r;
      r.logits = step(211, 330, engine::step_kind::decode);
      for (std::size_t st = 0; st < s.cache().num_streams(); ++st) r.keep.push_back(s.cache().stream_positions(st));
      r.state = dynamic_cast<const engine::compressor_hook&>(*s.hook()).state();
      return r;
    };
    const outcome whole = run(std::numeric_limits<std::size_t>::max());
    const outcome pieces = run(1);
    const std::string what = std::string(infokv::to_string(g)) + (mean ? " mean" : "");
    EXPECT_TRUE(whole.state == pieces.state) << what;
    EXPECT_EQ(whole.keep, pieces.keep) << what;
    ASSERT_EQ(whole.logits.size(), pieces.logits.size()) << what;
    EXPECT_EQ(std::memcmp(whole.logits.data(), pieces.logits.data(), static_cast<std::size_t>(whole.logits.size()) * 4), 0)
        << what;
  }
}

// The evaluation's fan-out: hooks that observe rows take a long step in pieces (through the
// shadow caches of other granularities too), the others in one call; every state is the one
// whole steps give.
TEST(EngineAttentionRows, FanOutHooksSeePiecesOrWholeStepsAlike) {
  REQUIRE_MODEL();
  const auto ids = loaded().tok.encode(data("pride_and_prejudice_20k.txt"));
  const auto& model = loaded().model;
  const auto hooks = [&] {
    std::vector<std::unique_ptr<engine::compressor_hook>> out;
    for (const char* spec : {"h2o", "h2o:mean@per_sequence", "h2o@per_layer_head", "snapkv", "infokv@per_sequence"}) {
      engine::compression_options o;
      const std::string sp = spec;
      o.policy = sp.substr(0, sp.find_first_of(":@"));
      o.mean_attention = sp.find(":mean") != std::string::npos;
      if (sp.find('@') != std::string::npos) o.granularity = engine::parse_granularity(sp.substr(sp.find('@') + 1));
      out.push_back(engine::make_hook(o, model.config, 400));
    }
    return out;
  };
  const auto run = [&](std::size_t cap) {
    auto fan = std::make_unique<eval::fanout_hook>(hooks(), infokv::stream_granularity::per_layer, model.config, 64, 400);
    const eval::fanout_hook* f = fan.get();
    engine::session s(model, infokv::stream_granularity::per_layer, 64, 400, std::move(fan));
    s.set_attention_row_bytes(cap);
    (void)s.forward(std::span<const std::int32_t>(ids.data(), 250), engine::step_kind::prefill_chunk, true);
    (void)s.forward(std::span<const std::int32_t>(ids.data() + 250, 140), engine::step_kind::prefill_chunk, true);
    std::vector<infokv::sequence_state> states;
    for (std::size_t i = 0; i < 5; ++i) states.push_back(f->hook(i).state());
    return states;
  };
  const auto whole = run(std::numeric_limits<std::size_t>::max());
  const auto pieces = run(1);
  for (std::size_t i = 0; i < whole.size(); ++i) EXPECT_TRUE(whole[i] == pieces[i]) << "hook " << i;
}

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
