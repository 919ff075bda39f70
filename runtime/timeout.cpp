#include "corun/timeout.hpp"

#include <string>

namespace corun {

namespace {
std::string describe(std::chrono::nanoseconds after) {
    using namespace std::chrono;
    if (after >= milliseconds(1)) return std::to_string(duration_cast<milliseconds>(after).count()) + " ms";
    return std::to_string(after.count()) + " ns";
}
}  // namespace

timeout_error::timeout_error(std::chrono::nanoseconds after)
    : std::runtime_error("corun: operation timed out after " + describe(after)), m_after(after) {}

}  // namespace corun
