// A task's exception on the wire (private to the runtime).
#pragma once

#include <exception>
#include <string>
#include <string_view>

#include "corun/awaitable.hpp"

namespace corun::detail {

/// Appends the failure frame's payload for `error` (worker side).
CORUN_API void encode_failure(std::string& out, std::exception_ptr error);
/// The exception a failure frame's payload stands for (parent side). A
/// payload that cannot be read gives the reading error instead.
CORUN_API std::exception_ptr decode_failure(std::string_view payload, int pid);

}  // namespace corun::detail
