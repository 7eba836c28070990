// SPDX-License-Identifier: Apache-2.0
// A reader for GGUF files (versions 2 and 3; the format llama.cpp writes): header, typed
// metadata, tensor infos, alignment and data offset. Parsing works on a byte span and checks
// every length, count and offset against the bytes that are there, so a truncated or corrupt file
// gives a gguf_error naming the field instead of a crash or an allocation the file cannot justify.
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace engine {

struct gguf_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// GGUF metadata value types.
enum class gguf_type : std::uint32_t {
  u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, boolean = 7, string = 8, array = 9,
  u64 = 10, i64 = 11, f64 = 12,
};

/// ggml tensor element types this reader knows by name (others are reported by number).
enum class ggml_type : std::uint32_t {
  f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9, q2_k = 10, q3_k = 11,
  q4_k = 12, q5_k = 13, q6_k = 14, q8_k = 15, bf16 = 30,
};

[[nodiscard]] inline std::string ggml_type_name(std::uint32_t t) {
  switch (static_cast<ggml_type>(t)) {
    case ggml_type::f32: return "F32";
    case ggml_type::f16: return "F16";
    case ggml_type::q4_0: return "Q4_0";
    case ggml_type::q4_1: return "Q4_1";
    case ggml_type::q5_0: return "Q5_0";
    case ggml_type::q5_1: return "Q5_1";
    case ggml_type::q8_0: return "Q8_0";
    case ggml_type::q8_1: return "Q8_1";
    case ggml_type::q2_k: return "Q2_K";
    case ggml_type::q3_k: return "Q3_K";
    case ggml_type::q4_k: return "Q4_K";
    case ggml_type::q5_k: return "Q5_K";
    case ggml_type::q6_k: return "Q6_K";
    case ggml_type::q8_k: return "Q8_K";
    case ggml_type::bf16: return "BF16";
  }
  return "type " + std::to_string(t);
}

/// Elements per block and bytes per block of the types the engine can dequantise; {0, 0} for the
/// others.
struct block_format {
  std::size_t elements = 0;
  std::size_t bytes = 0;
};
[[nodiscard]] constexpr block_format block_format_of(std::uint32_t t) noexcept {
  switch (static_cast<ggml_type>(t)) {
    case ggml_type::f32: return {1, 4};
    case ggml_type::f16: return {1, 2};
    case ggml_type::bf16: return {1, 2};
    case ggml_type::q4_0: return {32, 18};
    case ggml_type::q4_1: return {32, 20};
    case ggml_type::q8_0: return {32, 34};
    default: return {0, 0};
  }
}

/// One metadata value. Scalars are widened into the number fields; strings point into the file;
/// arrays record their element type, count and where their elements start.
struct gguf_value {
  gguf_type type = gguf_type::u8;
  std::uint64_t u = 0;  // unsigned integers and bool
  std::int64_t i = 0;   // signed integers
  double f = 0.0;       // floats
  std::string_view str;
  gguf_type element_type = gguf_type::u8;  // arrays
  std::uint64_t count = 0;
  std::size_t elements_offset = 0;
};

struct gguf_tensor {
  std::string name;
  std::vector<std::uint64_t> shape;  // ne[0] first (ne[0] is the contiguous dimension)
  std::uint32_t type = 0;
  std::uint64_t offset = 0;          // relative to the data section
  std::uint64_t elements = 0;
  std::uint64_t bytes = 0;
  const std::byte* data = nullptr;
};

class gguf_file {
 public:
  /// Parses a GGUF image held in memory (not copied: it must outlive the gguf_file).
  static gguf_file parse(std::span<const std::byte> bytes) {
    gguf_file f;
    f.bytes_ = bytes;
    f.parse_all();
    return f;
  }
  /// Maps `path` read-only and parses it.
  static gguf_file open(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0) throw gguf_error("cannot open model file '" + path + "': " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      throw gguf_error("model file '" + path + "' is not a regular file");
    }
    const auto size = static_cast<std::size_t>(st.st_size);
    if (size == 0) {
      ::close(fd);
      throw gguf_error("model file '" + path + "' is empty");
    }
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (p == MAP_FAILED) throw gguf_error("cannot map model file '" + path + "'");
    gguf_file f;
    f.mapping_ = std::shared_ptr<void>(p, [size](void* q) { ::munmap(q, size); });
    f.bytes_ = std::span<const std::byte>(static_cast<const std::byte*>(p), size);
    try {
      f.parse_all();
    } catch (const gguf_error& e) {
      throw gguf_error("model file '" + path + "': " + e.what());
    }
    return f;
  }

  [[nodiscard]] std::uint32_t version() const noexcept { return version_; }
  [[nodiscard]] std::size_t alignment() const noexcept { return alignment_; }
  [[nodiscard]] std::size_t data_offset() const noexcept { return data_offset_; }
  [[nodiscard]] const std::map<std::string, gguf_value, std::less<>>& metadata() const noexcept { return kv_; }
  [[nodiscard]] const std::vector<gguf_tensor>& tensors() const noexcept { return tensors_; }

  [[nodiscard]] const gguf_value* find(std::string_view key) const {
    const auto it = kv_.find(key);
    return it == kv_.end() ? nullptr : &it->second;
  }
  [[nodiscard]] const gguf_tensor* find_tensor(std::string_view name) const {
    for (const auto& t : tensors_)
      if (t.name == name) return &t;
    return nullptr;
  }
  [[nodiscard]] const gguf_tensor& tensor(std::string_view name) const {
    if (const auto* t = find_tensor(name)) return *t;
    throw gguf_error("tensor '" + std::string(name) + "' is missing");
  }

  /// Metadata accessors: a missing key or a value of another kind is an error naming the key.
  [[nodiscard]] std::uint64_t get_uint(std::string_view key) const {
    const gguf_value& v = require(key);
    switch (v.type) {
      case gguf_type::u8: case gguf_type::u16: case gguf_type::u32: case gguf_type::u64: case gguf_type::boolean:
        return v.u;
      case gguf_type::i8: case gguf_type::i16: case gguf_type::i32: case gguf_type::i64:
        if (v.i < 0) throw gguf_error("metadata '" + std::string(key) + "' is negative");
        return static_cast<std::uint64_t>(v.i);
      default: throw gguf_error("metadata '" + std::string(key) + "' is not an integer");
    }
  }
  [[nodiscard]] std::uint64_t get_uint(std::string_view key, std::uint64_t fallback) const {
    return find(key) ? get_uint(key) : fallback;
  }
  [[nodiscard]] double get_float(std::string_view key) const {
    const gguf_value& v = require(key);
    if (v.type == gguf_type::f32 || v.type == gguf_type::f64) return v.f;
    throw gguf_error("metadata '" + std::string(key) + "' is not a float");
  }
  [[nodiscard]] double get_float(std::string_view key, double fallback) const {
    return find(key) ? get_float(key) : fallback;
  }
  [[nodiscard]] bool get_bool(std::string_view key, bool fallback) const {
    const gguf_value* v = find(key);
    if (v == nullptr) return fallback;
    if (v->type != gguf_type::boolean) throw gguf_error("metadata '" + std::string(key) + "' is not a bool");
    return v->u != 0;
  }
  [[nodiscard]] std::string get_string(std::string_view key) const {
    const gguf_value& v = require(key);
    if (v.type != gguf_type::string) throw gguf_error("metadata '" + std::string(key) + "' is not a string");
    return std::string(v.str);
  }
  [[nodiscard]] std::string get_string(std::string_view key, std::string fallback) const {
    return find(key) ? get_string(key) : fallback;
  }
  /// The elements of a string array.
  [[nodiscard]] std::vector<std::string> get_string_array(std::string_view key) const {
    const gguf_value& v = require_array(key, gguf_type::string);
    std::vector<std::string> out;
    out.reserve(static_cast<std::size_t>(v.count));
    std::size_t pos = v.elements_offset;
    for (std::uint64_t e = 0; e < v.count; ++e) out.emplace_back(read_string(pos));
    return out;
  }
  /// The elements of an integer array (any integer element type) as int64.
  [[nodiscard]] std::vector<std::int64_t> get_int_array(std::string_view key) const {
    const gguf_value& v = require(key);
    if (v.type != gguf_type::array) throw gguf_error("metadata '" + std::string(key) + "' is not an array");
    std::vector<std::int64_t> out;
    out.reserve(static_cast<std::size_t>(v.count));
    std::size_t pos = v.elements_offset;
    for (std::uint64_t e = 0; e < v.count; ++e) {
      const gguf_value x = read_scalar(v.element_type, pos);
      switch (v.element_type) {
        case gguf_type::i8: case gguf_type::i16: case gguf_type::i32: case gguf_type::i64: out.push_back(x.i); break;
        case gguf_type::u8: case gguf_type::u16: case gguf_type::u32: case gguf_type::u64: case gguf_type::boolean:
          out.push_back(static_cast<std::int64_t>(x.u));
          break;
        default: throw gguf_error("metadata '" + std::string(key) + "' is not an integer array");
      }
    }
    return out;
  }

 private:
  const gguf_value& require(std::string_view key) const {
    const gguf_value* v = find(key);
    if (v == nullptr) throw gguf_error("metadata '" + std::string(key) + "' is missing");
    return *v;
  }
  const gguf_value& require_array(std::string_view key, gguf_type element) const {
    const gguf_value& v = require(key);
    if (v.type != gguf_type::array || v.element_type != element)
      throw gguf_error("metadata '" + std::string(key) + "' is not an array of the expected type");
    return v;
  }

  void need(std::size_t pos, std::uint64_t n, const char* what) const {
    if (pos > bytes_.size() || n > bytes_.size() - pos)
      throw gguf_error(std::string("truncated file: ") + what + " at byte " + std::to_string(pos) + " needs " +
                       std::to_string(n) + " bytes, " + std::to_string(bytes_.size() - std::min(pos, bytes_.size())) +
                       " remain");
  }
  template <class T>
  T read(std::size_t& pos, const char* what) const {
    need(pos, sizeof(T), what);
    T v;
    std::memcpy(&v, bytes_.data() + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  std::string_view read_string(std::size_t& pos) const {
    const auto n = read<std::uint64_t>(pos, "string length");
    need(pos, n, "string");
    std::string_view s(reinterpret_cast<const char*>(bytes_.data() + pos), static_cast<std::size_t>(n));
    pos += static_cast<std::size_t>(n);
    return s;
  }
  static std::size_t scalar_size(gguf_type t) {
    switch (t) {
      case gguf_type::u8: case gguf_type::i8: case gguf_type::boolean: return 1;
      case gguf_type::u16: case gguf_type::i16: return 2;
      case gguf_type::u32: case gguf_type::i32: case gguf_type::f32: return 4;
      case gguf_type::u64: case gguf_type::i64: case gguf_type::f64: return 8;
      default: return 0;
    }
  }
  gguf_value read_scalar(gguf_type t, std::size_t& pos) const {
    gguf_value v;
    v.type = t;
    switch (t) {
      case gguf_type::u8: v.u = read<std::uint8_t>(pos, "u8"); break;
      case gguf_type::i8: v.i = read<std::int8_t>(pos, "i8"); break;
      case gguf_type::u16: v.u = read<std::uint16_t>(pos, "u16"); break;
      case gguf_type::i16: v.i = read<std::int16_t>(pos, "i16"); break;
      case gguf_type::u32: v.u = read<std::uint32_t>(pos, "u32"); break;
      case gguf_type::i32: v.i = read<std::int32_t>(pos, "i32"); break;
      case gguf_type::f32: v.f = read<float>(pos, "f32"); break;
      case gguf_type::boolean: {
        const auto b = read<std::uint8_t>(pos, "bool");
        if (b > 1) throw gguf_error("a bool value is neither 0 nor 1");
        v.u = b;
        break;
      }
      case gguf_type::u64: v.u = read<std::uint64_t>(pos, "u64"); break;
      case gguf_type::i64: v.i = read<std::int64_t>(pos, "i64"); break;
      case gguf_type::f64: v.f = read<double>(pos, "f64"); break;
      case gguf_type::string: v.str = read_string(pos); break;
      default: throw gguf_error("unknown metadata value type " + std::to_string(static_cast<std::uint32_t>(t)));
    }
    return v;
  }
  gguf_value read_value(gguf_type t, std::size_t& pos, int depth) const {
    if (t != gguf_type::array) return read_scalar(t, pos);
    if (depth > 0) throw gguf_error("nested metadata arrays are not supported");
    gguf_value v;
    v.type = t;
    v.element_type = static_cast<gguf_type>(read<std::uint32_t>(pos, "array type"));
    v.count = read<std::uint64_t>(pos, "array length");
    v.elements_offset = pos;
    if (v.element_type == gguf_type::string) {
      // Each string needs at least its 8-byte length: refuse counts the file cannot hold.
      need(pos, v.count > bytes_.size() / 8 ? bytes_.size() + 1 : v.count * 8, "string array");
      for (std::uint64_t e = 0; e < v.count; ++e) (void)read_string(pos);
    } else {
      const std::size_t es = scalar_size(v.element_type);
      if (es == 0) throw gguf_error("unsupported metadata array element type " +
                                    std::to_string(static_cast<std::uint32_t>(v.element_type)));
      if (v.count > bytes_.size() / es) need(pos, bytes_.size() + 1, "array");
      need(pos, v.count * es, "array");
      pos += static_cast<std::size_t>(v.count * es);
    }
    return v;
  }

  void parse_all() {
    std::size_t pos = 0;
    need(0, 4, "magic");
    if (std::memcmp(bytes_.data(), "GGUF", 4) != 0) throw gguf_error("not a GGUF file (bad magic)");
    pos = 4;
    version_ = read<std::uint32_t>(pos, "version");
    if (version_ != 2 && version_ != 3)
      throw gguf_error("unsupported GGUF version " + std::to_string(version_) + " (supported: 2, 3)");
    const auto n_tensors = read<std::uint64_t>(pos, "tensor count");
    const auto n_kv = read<std::uint64_t>(pos, "metadata count");
    // Every key-value needs >= 12 bytes and every tensor info >= 24: refuse impossible counts early.
    if (n_kv > bytes_.size() / 12)
      throw gguf_error("metadata count " + std::to_string(n_kv) + " exceeds the file (truncated or corrupt)");
    if (n_tensors > bytes_.size() / 24)
      throw gguf_error("tensor count " + std::to_string(n_tensors) + " exceeds the file (truncated or corrupt)");
    for (std::uint64_t k = 0; k < n_kv; ++k) {
      const std::string key(read_string(pos));
      const auto t = static_cast<gguf_type>(read<std::uint32_t>(pos, "value type"));
      const gguf_value v = read_value(t, pos, 0);
      if (!kv_.emplace(key, v).second) throw gguf_error("metadata key '" + key + "' appears twice");
    }
    alignment_ = 32;
    if (const gguf_value* a = find("general.alignment")) {
      if (a->type != gguf_type::u32 || a->u == 0 || (a->u & (a->u - 1)) != 0)
        throw gguf_error("general.alignment must be a power of two (u32)");
      alignment_ = static_cast<std::size_t>(a->u);
    }
    tensors_.reserve(static_cast<std::size_t>(n_tensors));
    for (std::uint64_t k = 0; k < n_tensors; ++k) {
      gguf_tensor t;
      t.name = std::string(read_string(pos));
      const auto dims = read<std::uint32_t>(pos, "tensor dimensions");
      if (dims == 0 || dims > 4) throw gguf_error("tensor '" + t.name + "' has " + std::to_string(dims) + " dimensions");
      t.elements = 1;
      for (std::uint32_t d = 0; d < dims; ++d) {
        const auto ne = read<std::uint64_t>(pos, "tensor shape");
        if (ne == 0 || ne > (std::uint64_t{1} << 40) || t.elements > (std::uint64_t{1} << 40) / ne)
          throw gguf_error("tensor '" + t.name + "' has an impossible shape");
        t.shape.push_back(ne);
        t.elements *= ne;
      }
      t.type = read<std::uint32_t>(pos, "tensor type");
      t.offset = read<std::uint64_t>(pos, "tensor offset");
      tensors_.push_back(std::move(t));
    }
    data_offset_ = (pos + alignment_ - 1) / alignment_ * alignment_;
    if (data_offset_ > bytes_.size()) throw gguf_error("truncated file: no tensor data section");
    const std::size_t data_bytes = bytes_.size() - data_offset_;
    for (auto& t : tensors_) {
      const block_format bf = block_format_of(t.type);
      if (t.offset % alignment_ != 0) throw gguf_error("tensor '" + t.name + "' is not aligned");
      if (bf.elements == 0) continue;  // unknown size: checked when (if) the engine needs it
      if (t.shape[0] % bf.elements != 0)
        throw gguf_error("tensor '" + t.name + "' rows are not a whole number of " + ggml_type_name(t.type) + " blocks");
      t.bytes = t.elements / bf.elements * bf.bytes;
      if (t.offset > data_bytes || t.bytes > data_bytes - t.offset)
        throw gguf_error("truncated file: tensor '" + t.name + "' ends past the end of the file");
      t.data = bytes_.data() + data_offset_ + t.offset;
    }
  }

  std::shared_ptr<void> mapping_;
  std::span<const std::byte> bytes_;
  std::uint32_t version_ = 0;
  std::size_t alignment_ = 32;
  std::size_t data_offset_ = 0;
  std::map<std::string, gguf_value, std::less<>> kv_;
  std::vector<gguf_tensor> tensors_;
};

}  // namespace engine
