// SPDX-License-Identifier: Apache-2.0
// What infokv_eval writes to --out: quality.csv, influence.csv, passkey.csv and
// repeat_first_read.csv (scripts/eval_report.py makes the tables and plots from them), and
// policies.csv, the policy registry's names and families, so that the report groups policies
// the way the binary that produced the numbers did.
#pragma once

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <stdexcept>
#include <string>

#include "../metrics.hpp"
#include "../policy_registry.hpp"

namespace eval {

/// CSV output with a fixed header.
class csv_file {
 public:
  csv_file(const std::filesystem::path& p, const std::string& header) : out_(p) {
    if (!out_) throw std::runtime_error("cannot write '" + p.string() + "'");
    out_ << header << '\n';
  }
  template <class... Ts>
  void row(const Ts&... xs) {
    std::size_t i = 0;
    ((out_ << (i++ == 0 ? "" : ",") << format(xs)), ...);
    out_ << '\n';
    out_.flush();
  }

 private:
  // Labels may hold commas ("infokv:alpha=1,invert=1"): quoted as RFC 4180 says.
  static std::string format(const std::string& s) {
    if (s.find_first_of(",\"") == std::string::npos) return s;
    std::string q = "\"";
    for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
    return q + "\"";
  }
  static std::string format(const char* s) { return format(std::string(s)); }
  static std::string format(double x) {
    char b[40];
    std::snprintf(b, sizeof b, "%.12g", x);
    return b;
  }
  static std::string format(std::size_t x) { return std::to_string(x); }
  std::ofstream out_;
};

/// The policy registry as CSV: name, family, the settings each takes, whether it observes
/// attention rows. One row per policy in registry order.
inline void write_policy_table(std::ostream& out) {
  out << "name,family,settings,attention_rows\n";
  for (const auto& e : engine::policy_registry)
    out << e.name << ',' << engine::to_string(e.family) << ',' << engine::policy_settings(e) << ','
        << (e.attention_rows ? 1 : 0) << '\n';
}

/// The result files of one run, opened (and given their headers) in `dir`.
struct result_files {
  explicit result_files(const std::filesystem::path& dir)
      : quality(dir / "quality.csv",
                "scenario,window,context,period,budget,policy,granularity,kept,predictions,nll_full,nll,delta_nll,kl,"
                "top1,library_seconds"),
        influence(dir / "influence.csv", "policy,budget,prefix,chunk,distance,predictions,nll_full,nll,delta_nll,kl,top1"),
        passkey(dir / "passkey.csv", "policy,granularity,budget,context,depth,trials,correct,answer_nll"),
        first_read(dir / "repeat_first_read.csv", "gap,context,predictions,nll_first_read") {
    std::ofstream policies(dir / "policies.csv");
    write_policy_table(policies);
    if (!policies) throw std::runtime_error("cannot write '" + (dir / "policies.csv").string() + "'");
  }

  /// One quality row, and its line in the log.
  void write_quality(const std::string& scenario, std::size_t window, std::size_t context, std::size_t period,
                     double budget, const std::string& policy, const std::string& gran, double kept,
                     const engine::quality_sum& q, double lib_s) {
    quality.row(scenario, window, context, period, budget, policy, gran, kept, q.predictions, q.mean(q.nll_full),
                q.mean(q.nll), q.mean(q.nll - q.nll_full), q.mean(q.kl), q.mean(static_cast<double>(q.top1_same)), lib_s);
    std::printf("  %-9s C=%-5zu P=%-4zu keep %-5.3g %-28s dNLL %+.4f  KL %.4f  top1 %.3f\n", scenario.c_str(), context,
                period, budget, policy.c_str(), q.mean(q.nll - q.nll_full), q.mean(q.kl),
                q.mean(static_cast<double>(q.top1_same)));
    std::fflush(stdout);
  }

  csv_file quality, influence, passkey, first_read;
};

[[nodiscard]] inline std::string granularity_name(infokv::stream_granularity g) {
  return std::string(infokv::to_string(g));
}

}  // namespace eval
