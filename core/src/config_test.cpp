#include "imlog/core/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace imlog {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

struct Sample {
  std::string name = "default";
  bool on = false;
  int32_t n = 4;
  uint64_t size = 1;
  std::chrono::milliseconds wait{100};
  std::vector<std::string> brokers;
};

Sample read_sample(std::string_view yaml) {
  auto root = ConfigSection::parse(yaml, "test.yaml");
  auto s = root.section("sample");
  Sample out;
  s.read("name", out.name);
  s.read("on", out.on);
  s.read("n", out.n);
  s.read_size("size", out.size);
  s.read("wait", out.wait);
  s.read("brokers", out.brokers);
  s.finish();
  root.finish();
  return out;
}

std::string error_of(std::string_view yaml) {
  try {
    read_sample(yaml);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

TEST(Config, EmptyDocumentKeepsEveryDefault) {
  Sample s = read_sample("");
  EXPECT_EQ(s.name, "default");
  EXPECT_FALSE(s.on);
  EXPECT_EQ(s.n, 4);
  EXPECT_EQ(s.wait, std::chrono::milliseconds(100));
}

TEST(Config, ReadsEveryKind) {
  Sample s = read_sample(R"(
sample:
  name: x
  on: true
  n: -7
  size: 16MiB
  wait: 2s
  brokers: [a:1, b:2]
)");
  EXPECT_EQ(s.name, "x");
  EXPECT_TRUE(s.on);
  EXPECT_EQ(s.n, -7);
  EXPECT_EQ(s.size, 16u << 20);
  EXPECT_EQ(s.wait, std::chrono::milliseconds(2000));
  EXPECT_EQ(s.brokers, (std::vector<std::string>{"a:1", "b:2"}));
}

TEST(Config, CommaSeparatedListAndMillisecondSuffix) {
  Sample s = read_sample("sample: {brokers: 'a:1,b:2', wait: 250ms}");
  EXPECT_EQ(s.brokers.size(), 2u);
  EXPECT_EQ(s.wait, std::chrono::milliseconds(250));
}

TEST(Config, ErrorsNameTheKey) {
  EXPECT_THAT(error_of("sample: {n: abc}"), HasSubstr("`sample.n`"));
  EXPECT_THAT(error_of("sample: {n: abc}"), HasSubstr("whole number"));
  EXPECT_THAT(error_of("sample: {on: maybe}"), HasSubstr("`sample.on`: expected true or false"));
  EXPECT_THAT(error_of("sample: {wait: soon}"), HasSubstr("`sample.wait`"));
  EXPECT_THAT(error_of("sample: {size: 3XB}"), HasSubstr("`sample.size`"));
  EXPECT_THAT(error_of("sample: {n: 99999999999}"), HasSubstr("out of range"));
  EXPECT_THAT(error_of("sample: [1, 2]"), HasSubstr("`sample`: expected a map"));
}

TEST(Config, UnknownKeysAreNamed) {
  EXPECT_THAT(error_of("sample: {nmae: x}"), HasSubstr("unknown config key `sample.nmae`"));
  EXPECT_THAT(error_of("smaple: {}"), HasSubstr("unknown config key `smaple`"));
}

// YAML allows a map or a list as a key (`? ...`); a config key is a name. Found by the config
// fuzzer: yaml-cpp threw from as<std::string>() and the process died.
TEST(Config, AKeyThatIsNotANameIsAnError) {
  EXPECT_THAT(error_of("sample:\n  ? {a: 1}\n  : x\n"), HasSubstr("a config key must be a plain name, not a map"));
  EXPECT_THAT(error_of("? [a, b]\n: x\n"), HasSubstr("a config key must be a plain name, not a list"));
  EXPECT_THAT(error_of("data_dir: /var/lib/imlog\nevent_log:\n? backend: 'kafka\n  parwies: {x: lz2}\n"),
              Not(HasSubstr("no error")));
}

TEST(Config, InvalidYamlAndMissingFile) {
  EXPECT_THAT(error_of("sample: {n: [}"), HasSubstr("not valid YAML"));
  EXPECT_THROW(ConfigSection::load_file("/nonexistent/imlog.yaml"), ConfigError);
}

}  // namespace
}  // namespace imlog
