// sharedctypes_typecodes — twin of seed S1-4 (001:151-166).
//
// Shows: the C++ type behind each typecode of Python's Value and Array
// (multiprocessing.sharedctypes.typecode_to_type): Python's Value('i', 0) is
// mp::Value<int>(0), Array('d', 10) is mp::Array<double>(10). One line per typecode:
// the typecode, the C++ type, its size in bytes, its range, and the ctypes type CPython
// maps the typecode to. Only the names are typed in: the sizes come from sizeof, and
// each range is read back from an mp::Array<T> into which a child process wrote
// std::numeric_limits<T>::lowest() and max(), so every type listed has made the trip
// through shared memory.
//
// Where this follows real Python rather than the seed (EXAMPLES.md note 5): the seed's
// table is Windows' or an old Python's ('i' and 'I' map to c_long and c_ulong, 'q' and
// 'Q' are missing). On Linux (x86-64 and aarch64 alike: both LP64) 'i'/'I' are the
// 32-bit int/unsigned int, 'l'/'L' and 'q'/'Q' are 64-bit, and 'u' is wchar_t, 4 bytes.
// The ctypes column gives the names CPython's sharedctypes.py uses; CPython itself
// prints c_long/c_ulong for 'q'/'Q' on LP64, where ctypes makes c_longlong an alias of
// c_long. The rows are in the seed's order (IPython sorts the keys), with 'q' and 'Q'
// added. Whether char is signed is the platform's choice (signed on x86-64, unsigned on
// aarch64): the 'c' row's range shows which.
#include <sys/utsname.h>

#include <cstdio>
#include <limits>
#include <mp/mp.hpp>
#include <string>
#include <type_traits>

namespace {

template <class T>
std::string number(T v) {
  if constexpr (std::is_floating_point_v<T>) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", static_cast<double>(v));
    return buf;
  } else if constexpr (std::is_signed_v<T>) {
    return std::to_string(static_cast<long long>(v));
  } else {
    return std::to_string(static_cast<unsigned long long>(v));
  }
}

// A child writes T's limits into shared memory; the parent prints them.
template <class T>
void row(char typecode, const char* cpp_type, const char* ctypes_name) {
  mp::Array<T> limits(2);
  mp::Process p(
      [](mp::Array<T> a) {
        a[0] = std::numeric_limits<T>::lowest();
        a[1] = std::numeric_limits<T>::max();
      },
      limits);
  p.start();
  p.join();
  const std::string range = number(limits[0]) + ".." + number(limits[1]);
  std::printf(" '%c'       %-20s %5zu  %-42s ctypes.%s\n", typecode, cpp_type, sizeof(T), range.c_str(), ctypes_name);
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);

  utsname host{};
  ::uname(&host);
  std::printf("typecode_to_type on %s %s:\n", host.sysname, host.machine);
  std::printf(" typecode  %-20s %5s  %-42s %s\n", "C++ type", "bytes", "range", "CPython");
  row<unsigned char>('B', "unsigned char", "c_ubyte");
  row<unsigned short>('H', "unsigned short", "c_ushort");
  row<unsigned int>('I', "unsigned int", "c_uint");
  row<unsigned long>('L', "unsigned long", "c_ulong");
  row<unsigned long long>('Q', "unsigned long long", "c_ulonglong");
  row<signed char>('b', "signed char", "c_byte");
  row<char>('c', "char", "c_char");
  row<double>('d', "double", "c_double");
  row<float>('f', "float", "c_float");
  row<short>('h', "short", "c_short");
  row<int>('i', "int", "c_int");
  row<long>('l', "long", "c_long");
  row<long long>('q', "long long", "c_longlong");
  row<wchar_t>('u', "wchar_t", "c_wchar");
  std::fflush(stdout);
}
