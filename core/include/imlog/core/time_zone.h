#pragma once
// IANA time zones, read from the system's zone database (/usr/share/zoneinfo, Debian's tzdata)
// through Abseil's time library: libstdc++ 12 has no std::chrono::locate_zone.
//
// Thread-safe: a zone is loaded once and cached by the library.

#include <cstdint>
#include <optional>
#include <string_view>

namespace imlog {

// Is `name` a zone of the database ("Europe/Paris", "UTC")? "" is not.
bool known_time_zone(std::string_view name);

// The minute of the local day (0..1439) at `unix_ms` in `zone`; "" is UTC. nullopt for a zone the
// database does not have.
std::optional<int> local_minute_of_day(std::string_view zone, int64_t unix_ms);

}  // namespace imlog
