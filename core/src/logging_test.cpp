#include "imlog/core/logging.h"

#include <sstream>

#include <gtest/gtest.h>
#include <rapidjson/document.h>
#include <spdlog/logger.h>
#include <spdlog/sinks/ostream_sink.h>

namespace imlog {
namespace {

// A logger writing through the JSON formatter into `out`.
std::shared_ptr<spdlog::logger> json_logger(std::ostringstream& out) {
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_st>(out);
  auto l = std::make_shared<spdlog::logger>("logging_test", sink);
  l->set_formatter(log_formatter("json"));
  return l;
}

TEST(Logging, JsonLineWithQuotesBackslashNewlineAndControlCharsParses) {
  std::ostringstream out;
  const std::string text = std::string("bad \"key\" at C:\\tmp\nnext line\ttab \x01 bell\x07 end");
  json_logger(out)->error("failed: {}", text);
  std::string line = out.str();
  ASSERT_FALSE(line.empty());
  ASSERT_EQ(line.back(), '\n');
  line.pop_back();
  EXPECT_EQ(line.find('\n'), std::string::npos) << "one event, one line";
  rapidjson::Document doc;
  doc.Parse(line.c_str(), line.size());
  ASSERT_FALSE(doc.HasParseError()) << line;
  ASSERT_TRUE(doc.IsObject());
  EXPECT_STREQ(doc["level"].GetString(), "error");
  EXPECT_STREQ(doc["component"].GetString(), "logging_test");
  EXPECT_EQ(std::string(doc["msg"].GetString(), doc["msg"].GetStringLength()), "failed: " + text);
}

TEST(Logging, TextLineKeepsTheMessageAsIs) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_st>(out);
  spdlog::logger l("logging_test", sink);
  l.set_formatter(log_formatter("text"));
  l.warn("a \"quoted\" word");
  EXPECT_NE(out.str().find("[logging_test] a \"quoted\" word"), std::string::npos) << out.str();
}

TEST(Logging, UnknownFormatIsRefused) { EXPECT_THROW(log_formatter("xml"), std::invalid_argument); }

}  // namespace
}  // namespace imlog
