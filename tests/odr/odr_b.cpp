#include <infokv/infokv.hpp>

int odr_b() {
  const float h = infokv::to_float(infokv::to_half(7.0f));
  return static_cast<int>(h);
}
