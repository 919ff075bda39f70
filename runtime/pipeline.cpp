#include "corun/pipeline.hpp"

namespace corun {

namespace {

std::string describe(const std::string& stage, std::size_t index) {
    std::string what = "corun::pipeline: ";
    what += index == 0 ? "the source" : "stage '" + stage + "'";
    what += " failed";
    try {
        throw;
    } catch (const std::exception& e) {
        what += ": ";
        what += e.what();
    } catch (...) {
        what += " (an exception not derived from std::exception)";
    }
    return what;
}

}  // namespace

stage_error::stage_error(std::string stage, std::size_t index)
    : std::runtime_error(describe(stage, index)), m_stage(std::move(stage)), m_index(index) {}

}  // namespace corun
