#include "json.h"

#include <gtest/gtest.h>

namespace imlog::gw {
namespace {

TEST(JsonBody, NamesTheProblem) {
  JsonBody b;
  EXPECT_FALSE(b.parse("{\"a\":"));
  EXPECT_NE(b.error().find("malformed JSON at offset"), std::string::npos) << b.error();
  EXPECT_FALSE(b.parse("[1]"));
  EXPECT_EQ(b.error(), "expected a JSON object");
  ASSERT_TRUE(b.parse(R"({"content": 5, "id": "12"})"));
  auto f = b.fields();
  std::string s;
  EXPECT_FALSE(f.str("content", s, true));
  EXPECT_EQ(b.error(), "field `content` must be a string");
  uint64_t id = 0;
  JsonBody c;
  ASSERT_TRUE(c.parse(R"({"id": "12", "n": 3})"));
  auto g = c.fields();
  EXPECT_TRUE(g.id("id", id, true));
  EXPECT_EQ(id, 12u);
  EXPECT_FALSE(g.str("missing", s, true));
  EXPECT_EQ(c.error(), "field `missing` is required (a string)");
}

TEST(JsonOut, MessageShapeIsTheContract) {
  MessageView m;
  m.message_id = 18446744073709551615ULL;
  m.conversation_id = "single_1_2";
  m.seq_id = 3;
  m.sender_id = 1;
  m.content = "hi \"there\"";
  m.message_type = "text";
  m.client_msg_id = "c1";
  m.created_at = 1700000000000;
  JsonOut j;
  write_message(j, m);
  EXPECT_EQ(j.take(),
            R"({"message_id":"18446744073709551615","conversation_id":"single_1_2","seq_id":3,"sender_id":1,)"
            R"("content":"hi \"there\"","message_type":"text","client_msg_id":"c1","created_at":1700000000000})");
}

TEST(JsonOut, DocumentsDeeperAndLongerThanItsInlineRoomComeOutWhole) {
  // 40 levels outgrow the writer's inline stack (8 levels), 10,000 characters the reserved string.
  JsonOut j;
  std::string want;
  for (int i = 0; i < 40; ++i) {
    j.begin_array();
    want += '[';
  }
  j.id_str(0).str(std::string(10000, 'z'));
  want += "\"0\",\"" + std::string(10000, 'z') + '"';
  for (int i = 0; i < 40; ++i) {
    j.end_array();
    want += ']';
  }
  EXPECT_EQ(j.take(), want);
}

// ---- hostile input (issue 12) -----------------------------------------------------------------

// {"a": [[[...]]]}: `depth` levels of arrays and objects in all.
std::string nested(unsigned depth) {
  return R"({"a":)" + std::string(depth - 1, '[') + std::string(depth - 1, ']') + "}";
}

TEST(ClientJson, NestingIsBoundedAndTheRefusalNamesTheLimit) {
  JsonBody b;
  EXPECT_TRUE(b.parse(nested(kMaxJsonDepth))) << b.error();
  EXPECT_FALSE(b.parse(nested(kMaxJsonDepth + 1)));
  EXPECT_EQ(b.parse_error_code(), "invalid");
  EXPECT_NE(b.error().find("deeper than 32"), std::string::npos) << b.error();
  EXPECT_NE(b.error().find("offset 36"), std::string::npos) << "the offset of the 33rd level: " << b.error();
  // Malformed stays invalid_json.
  EXPECT_FALSE(b.parse("{\"a\":"));
  EXPECT_EQ(b.parse_error_code(), "invalid_json");
}

TEST(ClientJson, AMillionOpenBracketsCostNoStack) {
  // A recursive parse of this overflows an 8 MiB stack.
  std::string deep(1'000'000, '[');
  rapidjson::Document doc;
  JsonError e;
  ASSERT_FALSE(parse_client_json(deep, doc, e));
  EXPECT_TRUE(e.too_deep);
  EXPECT_NE(e.message.find("offset 32"), std::string::npos) << e.message;
  JsonBody b;
  EXPECT_FALSE(b.parse(std::string(500'000, '{') + std::string(500'000, '[')));
  EXPECT_EQ(b.parse_error_code(), "invalid_json") << "a key is expected after {: " << b.error();
  EXPECT_FALSE(b.parse(R"({"a":)" + std::string(500'000, '[')));
  EXPECT_EQ(b.parse_error_code(), "invalid");
}

TEST(ClientJson, LoneSurrogateEscapesAreRefusedNamingTheField) {
  JsonBody b;
  EXPECT_FALSE(b.parse(R"({"email":"e\udc00@x"})"));
  EXPECT_EQ(b.parse_error_code(), "invalid_json");
  EXPECT_NE(b.error().find("field `email`"), std::string::npos) << b.error();
  EXPECT_NE(b.error().find("offset"), std::string::npos) << b.error();
  EXPECT_FALSE(b.parse(R"({"muted":["world","x\udfff"]})"));
  EXPECT_NE(b.error().find("field `muted`"), std::string::npos) << b.error();
  EXPECT_FALSE(b.parse(R"({"\udc00":1})"));
  EXPECT_NE(b.error().find("member name"), std::string::npos) << b.error();
  EXPECT_FALSE(b.parse(R"({"a":"\ud800"})")) << "a high surrogate without its pair";
  EXPECT_FALSE(b.parse("{\"a\":\"\xed\xb0\x80\"}")) << "the same, as raw bytes";
  EXPECT_TRUE(valid_utf8(b.error()));

  ASSERT_TRUE(b.parse(R"({"c":"\ud83d\ude00 \u00e9"})")) << b.error();
  std::string c;
  ASSERT_TRUE(b.fields().str("c", c, true));
  EXPECT_EQ(c, "\xf0\x9f\x98\x80 \xc3\xa9");
}

TEST(ClientJson, StringListsBoundTheirItems) {
  JsonBody b;
  ASSERT_TRUE(b.parse(R"({"l":["ab","abcd"]})"));
  std::vector<std::string> out;
  EXPECT_FALSE(b.fields().str_list("l", out, 10, 3));
  EXPECT_EQ(b.error(), "field `l` has an item longer than 3 bytes");
  out.clear();
  ASSERT_TRUE(b.parse(R"({"l":["ab","abcd"]})"));
  EXPECT_TRUE(b.fields().str_list("l", out, 10, 4));
  EXPECT_EQ(out, (std::vector<std::string>{"ab", "abcd"}));
}

TEST(JsonOut, InvalidBytesAreReplacedOnTheWayOut) {
  // Every error body and frame is written by JsonOut, so none carries the raw bytes.
  EXPECT_EQ(error_json("not_found", "`\xff` is not a group id"),
            "{\"code\":\"not_found\",\"message\":\"`\xef\xbf\xbd` is not a group id\"}");
  JsonOut j;
  j.begin_object().key("k\xfe").str("\xc3").end_object();
  EXPECT_EQ(j.take(), "{\"k\xef\xbf\xbd\":\"\xef\xbf\xbd\"}");
}

}  // namespace
}  // namespace imlog::gw
