// SPDX-License-Identifier: Apache-2.0
// The worker threads of infokv_eval: the compressed runs of a comparison are independent (each
// has its own session, cache copy and sequence state; the model and the reference are only
// read), so they run side by side.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace eval {

/// Runs f(0) .. f(n - 1) on `jobs` threads. Each worker's matrix products run single-threaded,
/// so the workers share the cores instead of oversubscribing them. The first exception is
/// rethrown after every worker stopped.
template <class F>
void parallel_for(std::size_t n, std::size_t jobs, F&& f) {
  if (jobs <= 1 || n <= 1) {
    for (std::size_t i = 0; i < n; ++i) f(i);
    return;
  }
  std::atomic<std::size_t> next{0};
  std::exception_ptr error;
  std::mutex mu;
  const auto work = [&] {
#ifdef _OPENMP
    omp_set_num_threads(1);
#endif
    for (std::size_t i = next++; i < n; i = next++) {
      try {
        f(i);
      } catch (...) {
        const std::lock_guard<std::mutex> lock(mu);
        if (!error) error = std::current_exception();
        next = n;
      }
    }
  };
  std::vector<std::thread> workers;
  try {
    for (std::size_t j = 0; j < std::min(jobs, n); ++j) workers.emplace_back(work);
  } catch (...) {  // no thread: stop the started ones before reporting
    next = n;
    for (auto& w : workers) w.join();
    throw;
  }
  for (auto& w : workers) w.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace eval
