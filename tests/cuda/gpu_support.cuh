// SPDX-License-Identifier: Apache-2.0
// Device-side helpers of the CUDA tests: a skip when no device is present, owning device
// buffers, and a device copy of a host_cache with the view the kernels read.
#pragma once

#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <cstddef>
#include <utility>
#include <vector>

#include "oracle.hpp"

namespace infokv_gpu_test {

inline bool have_gpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

#define INFOKV_REQUIRE_GPU() \
  if (!::infokv_gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device: kernel compiled, not run"

#define INFOKV_CUDA_OK(expr) ASSERT_EQ((expr), cudaSuccess) << #expr

template <class T>
class device_buffer {
 public:
  device_buffer() = default;
  explicit device_buffer(std::size_t n) : n_(n) {
    if (n > 0) EXPECT_EQ(cudaMalloc(&p_, n * sizeof(T)), cudaSuccess);
  }
  explicit device_buffer(const std::vector<T>& v) : device_buffer(v.size()) { upload(v); }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  device_buffer(device_buffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr; o.n_ = 0; }
  device_buffer& operator=(device_buffer&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    return *this;
  }
  ~device_buffer() {
    if (p_ != nullptr) cudaFree(p_);
  }
  void upload(const std::vector<T>& v) {
    if (!v.empty()) EXPECT_EQ(cudaMemcpy(p_, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  std::vector<T> download() const {
    std::vector<T> v(n_);
    if (n_ > 0) EXPECT_EQ(cudaMemcpy(v.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return v;
  }
  T* get() const { return p_; }
  std::size_t size() const { return n_; }

 private:
  T* p_ = nullptr;
  std::size_t n_ = 0;
};

/// A host_cache uploaded: pools, the arrays of pool pointers, page table and positions.
template <class T>
struct device_cache {
  std::vector<device_buffer<T>> keys, values;
  device_buffer<T*> key_ptrs, value_ptrs;
  device_buffer<std::int32_t> indptr, indices, last, positions;
  infokv::paged_kv_cache_params<T> params;

  explicit device_cache(const host_cache<T>& h)
      : indptr(h.indptr), indices(h.indices), last(h.last), positions(h.positions), params(h.params) {
    std::vector<T*> kp, vp;
    for (const auto& k : h.keys) {
      keys.emplace_back(k);
      kp.push_back(keys.back().get());
    }
    for (const auto& v : h.values) {
      values.emplace_back(v);
      vp.push_back(values.back().get());
    }
    key_ptrs = device_buffer<T*>(kp);
    value_ptrs = device_buffer<T*>(vp);
    params.key_pools = key_ptrs.get();
    params.value_pools = value_ptrs.get();
    params.indptr = indptr.get();
    params.indices = indices.get();
    params.last_page_len = last.get();
    params.positions = positions.get();
  }
  template <class Layout>
  infokv::paged_kv_cache_view<T, Layout> view() const {
    return infokv::paged_kv_cache_view<T, Layout>(params);
  }
};

}  // namespace infokv_gpu_test
