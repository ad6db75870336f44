#pragma once
// The events frozen as fixtures for each schema version: schema/fixtures/v<N>/<name>.bin holds
// the encoding of the entry <name> of fixture_events(N). The entries of a released version never
// change; a new version adds a new list. Used by imlog-schema-fixtures (writes) and schema_test
// (decodes the committed files with the current build).

#include <string>
#include <utility>
#include <vector>

#include "imlog/schema/codec.h"

namespace imlog::schema_fixtures {

std::vector<std::pair<std::string, fb::EventEnvelopeT>> fixture_events(int version);
std::vector<std::pair<std::string, fb::CommandEnvelopeT>> fixture_commands(int version);

}  // namespace imlog::schema_fixtures
