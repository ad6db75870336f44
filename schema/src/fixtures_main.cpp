// imlog-schema-fixtures DIR: writes the fixtures of the current schema version into DIR
// (schema/fixtures/v<N>). Run once when a schema version is added, and commit the files.

#include <filesystem>
#include <fstream>
#include <iostream>

#include "fixtures.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: imlog-schema-fixtures DIR\n";
    return 2;
  }
  std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir);
  auto write = [&](const std::string& name, const std::string& bytes) {
    std::ofstream(dir / (name + ".bin"), std::ios::binary) << bytes;
  };
  for (auto& [name, e] : imlog::schema_fixtures::fixture_events(imlog::kSchemaVersion)) {
    write("event_" + name, imlog::encode_event(e));
  }
  for (auto& [name, c] : imlog::schema_fixtures::fixture_commands(imlog::kSchemaVersion)) {
    write("command_" + name, imlog::encode_command(c));
  }
  std::cout << "wrote fixtures of schema version " << imlog::kSchemaVersion << " to " << dir << "\n";
  return 0;
}
