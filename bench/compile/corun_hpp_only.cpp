// Compile cost: corun/corun.hpp included, nothing used.
#include <corun/corun.hpp>

int main() {}
