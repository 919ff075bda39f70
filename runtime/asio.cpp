// Asio's compiled part, built once here: corun's headers and every program
// using them are compiled with BOOST_ASIO_SEPARATE_COMPILATION (carried by
// corun_dep, pkg-config and the CMake package), so Asio's non-template
// functions are not compiled again in each translation unit. They are
// exported from the library, whatever its default visibility, for those
// programs to link against.
#pragma GCC visibility push(default)
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#pragma GCC visibility pop
