#pragma once
// Names the calling thread for top, perf and gdb ("sequencer", "log-writer", "gw-io", ...), so an
// operator sees which role's thread burns CPU. Linux keeps 15 bytes of a name; longer names are
// cut.

#include <string_view>

namespace imlog {

void name_this_thread(std::string_view name);

}  // namespace imlog
