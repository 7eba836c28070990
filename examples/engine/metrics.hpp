// SPDX-License-Identifier: Apache-2.0
// Teacher-forced quality of a run against the full cache, per prediction: the negative
// log-likelihood of the true next token, KL(p_full || p_run) over the whole vocabulary, and
// whether both pick the same most likely token.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "eigen.hpp"
#include "llama_model.hpp"

namespace engine {

/// -log softmax(row)[target], with the row's maximum subtracted first and the normaliser summed
/// in double (the perplexity subcommand's formula: the evaluation's full-cache NLL is this).
template <class Row>
[[nodiscard]] double token_nll(const Row& row, std::int32_t target) {
  const float mx = row.maxCoeff();
  const double z = (row.array() - mx).exp().template cast<double>().sum();
  return -(static_cast<double>(row(target) - mx) - std::log(z));
}

/// log sum exp(row), by the same steps as token_nll.
template <class Row>
[[nodiscard]] double log_sum_exp(const Row& row) {
  const float mx = row.maxCoeff();
  return static_cast<double>(mx) + std::log((row.array() - mx).exp().template cast<double>().sum());
}

/// The full cache's predictions for a run of rows, kept in the form the comparisons need:
/// probabilities (float), sum p log p, the target's NLL and the arg max of each row.
class reference_rows {
 public:
  reference_rows() = default;
  reference_rows(std::size_t rows, std::size_t vocab) { resize(rows, vocab); }
  void resize(std::size_t rows, std::size_t vocab) {
    prob_.resize(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(vocab));
    neg_entropy_.assign(rows, 0.0);
    mass_.assign(rows, 0.0);
    nll_.assign(rows, 0.0);
    argmax_.assign(rows, -1);
  }
  /// Row r of the reference from full-cache logits and the true next token.
  template <class Row>
  void set(std::size_t r, const Row& logits, std::int32_t target) {
    const auto i = static_cast<Eigen::Index>(r);
    const double lse = log_sum_exp(logits);
    nll_[r] = token_nll(logits, target);
    Eigen::Index am = 0;
    logits.maxCoeff(&am);
    argmax_[r] = static_cast<std::int32_t>(am);
    double ne = 0.0, mass = 0.0;
    for (Eigen::Index v = 0; v < logits.size(); ++v) {
      const double lp = static_cast<double>(logits(v)) - lse;
      const auto p = static_cast<float>(std::exp(lp));  // the stored value is the one every sum uses
      prob_(i, v) = p;
      ne += static_cast<double>(p) * lp;
      mass += static_cast<double>(p);
    }
    neg_entropy_[r] = ne;
    mass_[r] = mass;
  }
  [[nodiscard]] std::size_t rows() const noexcept { return nll_.size(); }
  [[nodiscard]] double nll(std::size_t r) const { return nll_[r]; }
  [[nodiscard]] std::int32_t argmax(std::size_t r) const { return argmax_[r]; }

  /// KL(p_full || p_run) of row r against a run's logits row: sum p (log p - log q), with
  /// log q = logits - lse(logits); computed as -H(p) - p.logits + lse * sum(p).
  template <class Row>
  [[nodiscard]] double kl(std::size_t r, const Row& logits) const {
    const auto i = static_cast<Eigen::Index>(r);
    const double dot = (prob_.row(i).template cast<double>().array() * logits.template cast<double>().array()).sum();
    return neg_entropy_[r] - dot + log_sum_exp(logits) * mass_[r];
  }

 private:
  row_matrix prob_;
  std::vector<double> neg_entropy_, mass_, nll_;
  std::vector<std::int32_t> argmax_;
};

/// Sums of the per-prediction metrics over a set of rows.
struct quality_sum {
  std::size_t predictions = 0;
  double nll_full = 0.0, nll = 0.0, kl = 0.0;
  std::size_t top1_same = 0;

  template <class Row>
  void add(const reference_rows& ref, std::size_t r, const Row& logits, std::int32_t target) {
    ++predictions;
    nll_full += ref.nll(r);
    nll += token_nll(logits, target);
    kl += ref.kl(r, logits);
    Eigen::Index am = 0;
    logits.maxCoeff(&am);
    top1_same += static_cast<std::int32_t>(am) == ref.argmax(r);
  }
  void add(const quality_sum& o) {
    predictions += o.predictions;
    nll_full += o.nll_full;
    nll += o.nll;
    kl += o.kl;
    top1_same += o.top1_same;
  }
  [[nodiscard]] double mean(double x) const { return predictions == 0 ? 0.0 : x / static_cast<double>(predictions); }
};

}  // namespace engine
