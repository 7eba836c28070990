// SPDX-License-Identifier: Apache-2.0
// Error reporting without exceptions: an error code, an 8-byte status that carries it with a
// numeric detail (an index, a stream, a layer), a readable message, and result<T> for calls that
// return a value. Every public entry point that can meet bad input returns one of these.
#pragma once

#include <cstdint>
#include <string_view>
#include <type_traits>
#include <utility>

#include "infokv/config.hpp"

INFOKV_BEGIN_NAMESPACE

enum class errc : std::int32_t {
  ok = 0,
  null_pointer,             // a pool, page table or signal pointer that must be set is null
  shape_mismatch,           // strides, heads, head_dim or layers disagree with the model shape
  page_out_of_range,        // a page id outside [0, pool pages)
  page_used_twice,          // one physical page referenced twice in one pool
  length_exceeds_capacity,  // a stream longer than its pages can hold, or than the state's capacity
  invalid_page_table,       // indptr not monotone, last_page_len out of [1, page_size], ...
  invalid_page_size,        // page_size == 0
  invalid_budget,           // budget 0, below sinks + window, or a schedule that cannot fit
  invalid_ratio,            // a keep ratio outside (0, 1]
  invalid_config,           // any other parameter outside its domain
  non_finite_input,         // NaN or Inf in queries, logits, hidden states or attention rows
  logits_size_mismatch,     // a logits row whose size is not the vocabulary size
  length_mismatch,          // the view's stream length disagrees with the sequence state
  unsupported_head_dim,     // a head_dim a statically sized kernel does not support
  missing_signal,           // the policy needs a signal the engine did not supply
  unsupported_granularity,  // a budget schedule or scorer that cannot run at this granularity
  workspace_too_small,
  cuda_error,
  rope_not_stated,          // the policy needs the model's RoPE and compress_config::rope does not say
  unsupported_view,         // apply_mode::reindex on a view that is not cell-addressed (page_size 1, CSR)
  isa_not_permitted,        // the OS refused what the built-for ISA needs (AMX tile data permission)
};

[[nodiscard]] constexpr std::string_view to_string(errc e) noexcept {
  switch (e) {
    case errc::ok: return "ok";
    case errc::null_pointer: return "a required pointer (pool, page table or signal) is null";
    case errc::shape_mismatch: return "a shape or stride disagrees with the model shape";
    case errc::page_out_of_range: return "a page id is outside the pool";
    case errc::page_used_twice: return "a physical page is referenced twice";
    case errc::length_exceeds_capacity: return "a stream is longer than its pages or the state can hold";
    case errc::invalid_page_table: return "the page table is malformed";
    case errc::invalid_page_size: return "page_size must be at least 1";
    case errc::invalid_budget: return "the budget is 0 or below sinks + recent window";
    case errc::invalid_ratio: return "a keep ratio must lie in (0, 1]";
    case errc::invalid_config: return "a configuration value is outside its domain";
    case errc::non_finite_input: return "NaN or Inf in an input signal";
    case errc::logits_size_mismatch: return "the logits row does not have the vocabulary size";
    case errc::length_mismatch: return "the view's length disagrees with the sequence state";
    case errc::unsupported_head_dim: return "head_dim is not supported by the statically sized kernel";
    case errc::missing_signal: return "the policy needs a signal the engine did not supply";
    case errc::unsupported_granularity: return "not available at this stream granularity";
    case errc::workspace_too_small: return "the workspace is too small";
    case errc::cuda_error: return "a CUDA runtime call failed";
    case errc::rope_not_stated:
      return "the policy needs the model's RoPE: set compress_config::rope (theta and pairing) to the engine's values";
    case errc::unsupported_view:
      return "apply_mode::reindex needs a cell-addressed view: page_size 1 and a CSR page table";
    case errc::isa_not_permitted:
      return "the OS refused the AMX tile state (arch_prctl ARCH_REQ_XCOMP_PERM): build for another ISA";
  }
  return "unknown error";
}

/// \brief The outcome of a call: an error code plus one integer of detail (which stream, layer,
/// page or index was at fault; for cuda_error the cudaError_t). Trivially copyable, 8 bytes.
class [[nodiscard]] status {
 public:
  constexpr status() noexcept = default;
  constexpr status(errc code, std::int32_t detail = 0) noexcept  // NOLINT: implicit from errc
      : code_(code), detail_(detail) {}

  [[nodiscard]] constexpr bool ok() const noexcept { return code_ == errc::ok; }
  constexpr explicit operator bool() const noexcept { return ok(); }
  [[nodiscard]] constexpr errc code() const noexcept { return code_; }
  [[nodiscard]] constexpr std::int32_t detail() const noexcept { return detail_; }
  [[nodiscard]] constexpr std::string_view message() const noexcept { return to_string(code_); }

  friend constexpr bool operator==(status a, status b) noexcept {
    return a.code_ == b.code_ && a.detail_ == b.detail_;
  }
  friend constexpr bool operator==(status a, errc b) noexcept { return a.code_ == b; }

 private:
  errc code_ = errc::ok;
  std::int32_t detail_ = 0;
};
static_assert(sizeof(status) == 8 && std::is_trivially_copyable_v<status>);

[[nodiscard]] constexpr std::string_view to_string(status s) noexcept { return s.message(); }

/// \brief A value or a status, with the shape of std::expected (has_value, value, error).
template <class T>
class [[nodiscard]] result {
 public:
  constexpr result(T value) noexcept(std::is_nothrow_move_constructible_v<T>)  // NOLINT
      : value_(std::move(value)) {}
  constexpr result(status error) noexcept : value_(), error_(error) {  // NOLINT
    INFOKV_ASSERT(!error.ok(), "result<T> built from an ok status carries no value");
  }
  [[nodiscard]] constexpr bool has_value() const noexcept { return error_.ok(); }
  constexpr explicit operator bool() const noexcept { return has_value(); }
  [[nodiscard]] constexpr const T& value() const& noexcept {
    INFOKV_ASSERT(has_value(), "result<T>::value() on an error");
    return value_;
  }
  [[nodiscard]] constexpr T& value() & noexcept {
    INFOKV_ASSERT(has_value(), "result<T>::value() on an error");
    return value_;
  }
  [[nodiscard]] constexpr status error() const noexcept { return error_; }

 private:
  T value_;
  status error_{};
};

INFOKV_END_NAMESPACE

/// Returns early from the enclosing function with the status of `expr` when it is not ok.
#define INFOKV_TRY(expr)                                  \
  do {                                                    \
    if (const ::infokv::status infokv_st_ = (expr); !infokv_st_.ok()) return infokv_st_; \
  } while (false)
