#pragma once
// UTF-8, as the engine decides it (a field that is not valid UTF-8 is refused `invalid`) and as the
// gateway reads and writes JSON: no overlong forms, no surrogates, nothing past U+10FFFF.
//
// Threading: pure functions.

#include <string>
#include <string_view>

namespace imlog {

// Is `s` valid UTF-8?
bool valid_utf8(std::string_view s);

// `s` with every byte that does not begin a valid UTF-8 sequence replaced by U+FFFD (for text that
// must be valid on the way out: JSON replies, log lines).
std::string to_valid_utf8(std::string_view s);

}  // namespace imlog
