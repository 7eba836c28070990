// Two translation units include every public header and call the API; linking them together
// fails if any header defines a non-inline function.
#include <infokv/infokv.hpp>

int odr_b();

int main() {
  const infokv::status st = infokv::errc::invalid_budget;
  return (st.message() == infokv::to_string(infokv::errc::invalid_budget) && odr_b() == 7) ? 0 : 1;
}
