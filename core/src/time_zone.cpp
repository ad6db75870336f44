#include "imlog/core/time_zone.h"

#include <string>

#include <absl/time/civil_time.h>
#include <absl/time/time.h>

namespace imlog {
namespace {

std::optional<absl::TimeZone> load(std::string_view name) {
  absl::TimeZone tz;
  if (!absl::LoadTimeZone(std::string(name), &tz)) return std::nullopt;
  return tz;
}

}  // namespace

bool known_time_zone(std::string_view name) {
  // LoadTimeZone also accepts fixed offsets such as "Fixed/UTC+05:00" that are not IANA names.
  return !name.empty() && !name.starts_with("Fixed/") && load(name).has_value();
}

std::optional<int> local_minute_of_day(std::string_view zone, int64_t unix_ms) {
  auto tz = zone.empty() ? std::optional<absl::TimeZone>(absl::UTCTimeZone()) : load(zone);
  if (!tz) return std::nullopt;
  absl::CivilMinute m = absl::ToCivilMinute(absl::FromUnixMillis(unix_ms), *tz);
  return m.hour() * 60 + m.minute();
}

}  // namespace imlog
