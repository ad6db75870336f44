#include "timeline.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>
#include <rapidjson/document.h>

namespace imlog::timeline {
namespace {

// The escaping rules written the slow, obvious way.
std::string reference_json_string(std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "\"";
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 0xf];
        } else {
          out += ch;
        }
    }
  }
  return out + "\"";
}

std::string escaped(std::string_view s) {
  std::string out;
  append_json_string(out, s);
  return out;
}

TEST(JsonString, EscapesQuotesBackslashesAndControlBytesAnywhereInALongString) {
  EXPECT_EQ(escaped(""), "\"\"");
  EXPECT_EQ(escaped("plain text that is longer than one word"), "\"plain text that is longer than one word\"");
  std::string base = "abcdefghijklmnopqrstuvwx";  // three clean words
  for (size_t at = 0; at < base.size(); ++at) {
    for (char bad : {'"', '\\', '\n', '\x01', '\x1f'}) {
      std::string s = base;
      s[at] = bad;
      EXPECT_EQ(escaped(s), reference_json_string(s)) << "byte " << int{bad} << " at " << at;
    }
  }
  EXPECT_EQ(escaped("咖啡 and \x7f\x80\xff"), "\"咖啡 and \x7f\x80\xff\"");  // only the JSON specials change
}

RC_GTEST_PROP(JsonString, EqualsTheByteByByteRulesAndParsesBack, ()) {
  const auto s = *rc::gen::container<std::string>(rc::gen::oneOf(
      rc::gen::inRange<char>(0, 0x7f), rc::gen::element('"', '\\', '\n', '\t', '\x1f', '\x20'),
      rc::gen::element('a', 'b', ' ')));
  std::string out = escaped(s);
  RC_ASSERT(out == reference_json_string(s));
  rapidjson::Document d;
  d.Parse(out.data(), out.size());
  RC_ASSERT(!d.HasParseError());
  RC_ASSERT(std::string(d.GetString(), d.GetStringLength()) == s);
}

}  // namespace
}  // namespace imlog::timeline
