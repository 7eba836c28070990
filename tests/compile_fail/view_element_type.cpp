// SPDX-License-Identifier: Apache-2.0
// Compiled by CTest with -DVIEW_ELEMENT=<type>: every type the kernels do not decode must stop
// the build at the view with the library's message (another 2-byte float such as _Float16 or a
// host __half would otherwise be read as bfloat16 by the SIMD loaders); infokv::half, the control,
// must compile.
#include <infokv/infokv.hpp>

/// What an engine's own 2-byte float looks like on the host (CUDA's __half without nvcc).
struct host_half {
  unsigned short bits;
};

int main() {
  infokv::paged_kv_cache_params<VIEW_ELEMENT> p;
  const infokv::paged_kv_cache_view<VIEW_ELEMENT> view(p);
  const infokv::stream_view<VIEW_ELEMENT> stream;
  return static_cast<int>(view.num_layers() + stream.num_tokens());
}
