#include "client_frames.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace imlog::gw {
namespace {

FrameError error_of(std::string_view text) {
  auto frame = decode_client_frame(text, 1024);
  EXPECT_TRUE(std::holds_alternative<FrameError>(frame)) << text;
  return std::holds_alternative<FrameError>(frame) ? std::get<FrameError>(frame) : FrameError{};
}

TEST(ClientFrames, DecodesEachRequest) {
  auto send = decode_client_frame(
      R"({"type":"send-message","data":{"client_msg_id":"m1","conversation_id":"single_1_2","content":"hi","message_type":"image"}})",
      1024);
  ASSERT_TRUE(std::holds_alternative<SendMessageFrame>(send));
  EXPECT_EQ(std::get<SendMessageFrame>(send).content, "hi");
  EXPECT_EQ(std::get<SendMessageFrame>(send).type, fb::MessageType::Image);
  EXPECT_EQ(std::get<SendMessageFrame>(send).sent_at, 0) << "no sent_at: 0, remembered for ever";
  auto timed = decode_client_frame(
      R"({"type":"send-message","data":{"client_msg_id":"m1","conversation_id":"world","content":"hi","sent_at":1763781813000}})",
      1024);
  ASSERT_TRUE(std::holds_alternative<SendMessageFrame>(timed));
  EXPECT_EQ(std::get<SendMessageFrame>(timed).sent_at, 1763781813000);

  auto sync = decode_client_frame(R"({"type":"sync","data":{"conversation_id":"group_7","after_seq":0,"limit":200}})", 1024);
  ASSERT_TRUE(std::holds_alternative<SyncFrame>(sync));
  EXPECT_EQ(std::get<SyncFrame>(sync).after_seq, 0u);
  EXPECT_EQ(std::get<SyncFrame>(sync).limit, 200u);

  auto read = decode_client_frame(R"({"type":"read","data":{"conversation_id":"world","seq_id":12}})", 1024);
  ASSERT_TRUE(std::holds_alternative<ReadFrame>(read));
  EXPECT_EQ(std::get<ReadFrame>(read).seq, 12u);

  EXPECT_TRUE(std::holds_alternative<PingFrame>(decode_client_frame(R"({"type":"ping"})", 1024)));
  EXPECT_TRUE(std::holds_alternative<SetStatusFrame>(
      decode_client_frame(R"({"type":"set-status","data":{"status":"away"}})", 1024)));
}

TEST(ClientFrames, ErrorsNameTheRequest) {
  EXPECT_EQ(error_of("\xc3\x28").code, "invalid_utf8");
  EXPECT_EQ(error_of("{").code, "invalid_json");
  EXPECT_EQ(error_of(R"({"data":{}})").code, "invalid_frame");
  auto unknown = error_of(R"({"type":"nope"})");
  EXPECT_EQ(unknown.code, "unknown_type");
  EXPECT_EQ(unknown.request_type, "nope");
  auto bad = error_of(R"({"type":"send-message","data":{"client_msg_id":"m1","conversation_id":"user_1","content":"x"}})");
  EXPECT_EQ(bad.code, "invalid");
  EXPECT_EQ(bad.client_msg_id, "m1");
  EXPECT_EQ(bad.request_type, "send-message");
  auto big = error_of(R"({"type":"send-message","data":{"client_msg_id":"m1","conversation_id":"world","content":")" +
                      std::string(2000, 'a') + "\"}}");
  EXPECT_EQ(big.code, "invalid") << "content over max_content_bytes";
}

TEST(ClientFrames, SearchTakesAQueryWithSomethingToFindAndAMessageIdCursor) {
  auto search = decode_client_frame(
      R"({"type":"search","data":{"q":"攀岩 café","conversation_id":"group_7","before":"912181524521025536","limit":50}})",
      1024);
  ASSERT_TRUE(std::holds_alternative<SearchFrame>(search));
  const auto& s = std::get<SearchFrame>(search);
  EXPECT_EQ(s.text, "攀岩 café");
  EXPECT_EQ(s.conversation, "group_7");
  EXPECT_EQ(s.before_id, 912181524521025536u);
  EXPECT_EQ(s.limit, 50u);
  auto plain = decode_client_frame(R"({"type":"search","data":{"q":"tea"}})", 1024);
  ASSERT_TRUE(std::holds_alternative<SearchFrame>(plain));
  EXPECT_EQ(std::get<SearchFrame>(plain).limit, 20u);
  EXPECT_EQ(std::get<SearchFrame>(plain).before_id, 0u);
  for (const char* bad : {R"({"type":"search","data":{}})", R"({"type":"search","data":{"q":"a 好"}})",
                          R"({"type":"search","data":{"q":"tea","limit":51}})",
                          R"({"type":"search","data":{"q":"tea","conversation_id":"user_1"}})",
                          R"({"type":"search","data":{"q":"tea","before":"x"}})"}) {
    auto e = error_of(bad);
    EXPECT_EQ(e.code, "invalid") << bad;
    EXPECT_EQ(e.request_type, "search") << bad;
  }
}

// Each request refuses what it cannot use, with the code `invalid`, and names itself (and the
// client_msg_id when it has one) so the client can match the error to what it sent.
TEST(ClientFrames, EachRequestRefusesAFieldItCannotUse) {
  struct Case {
    std::string text;
    std::string request_type;
    std::string client_msg_id;
    std::string message_has;  // a word the message must contain
  };
  const std::vector<Case> cases = {
      {R"({"type":"send-message","data":{"client_msg_id":"","conversation_id":"world","content":"x"}})",
       "send-message", "", "client_msg_id is empty"},
      {R"({"type":"send-message","data":{"client_msg_id":"m2","conversation_id":"world","content":"x","message_type":"video"}})",
       "send-message", "m2", "message_type"},
      {R"({"type":"send-message","data":{"client_msg_id":"m3","conversation_id":"world"}})", "send-message",
       "m3", "content"},
      {R"({"type":"send-message","data":{"client_msg_id":")" + std::string(129, 'k') +
           R"(","conversation_id":"world","content":"x"}})",
       "send-message", "", "client_msg_id"},
      {R"({"type":"send-message","data":{"client_msg_id":"m4","conversation_id":"world","content":"x","sent_at":"now"}})",
       "send-message", "m4", "sent_at"},
      {R"({"type":"send-message","data":{"client_msg_id":"m5","conversation_id":"world","content":"x","sent_at":-5}})",
       "send-message", "m5", "sent_at"},
      {R"({"type":"send-message","data":{"client_msg_id":"m6","conversation_id":"world","content":"x","sent_at":0}})",
       "send-message", "m6", "sent_at"},
      {R"({"type":"send-message","data":{"client_msg_id":"m7","conversation_id":"world","content":"x","sent_at":1.5}})",
       "send-message", "m7", "sent_at"},
      {R"({"type":"send-message","data":{"client_msg_id":"m8","conversation_id":"world","content":"x","sent_at":253402300800000}})",
       "send-message", "m8", "sent_at"},
      {R"({"type":"sync","data":{"conversation_id":"world","after_seq":"3"}})", "sync", "", "after_seq"},
      {R"({"type":"sync","data":{"conversation_id":"world","limit":-1}})", "sync", "", "limit"},
      {R"({"type":"sync","data":{"conversation_id":"names_3"}})", "sync", "", "not a conversation id"},
      {R"({"type":"read","data":{"conversation_id":"world"}})", "read", "", "seq_id"},
      {R"({"type":"read","data":{"conversation_id":"single_2_1","seq_id":1}})", "read", "",
       "not a conversation id"},
      {R"({"type":"set-status","data":{}})", "set-status", "", "status"},
      {R"({"type":"set-status","data":{"status":")" + std::string(33, 'a') + R"("}})", "set-status", "",
       "status"},
  };
  for (const auto& c : cases) {
    auto e = error_of(c.text);
    EXPECT_EQ(e.code, "invalid") << c.text;
    EXPECT_EQ(e.request_type, c.request_type) << c.text;
    EXPECT_EQ(e.client_msg_id, c.client_msg_id) << c.text;
    EXPECT_NE(e.message.find(c.message_has), std::string::npos) << c.text << " → " << e.message;
  }
}

TEST(ClientFrames, AFrameWhoseDataIsNotAnObjectIsInvalid) {
  auto e = error_of(R"({"type":"sync","data":[1]})");
  EXPECT_EQ(e.code, "invalid_frame");
  EXPECT_EQ(e.request_type, "sync");
  EXPECT_EQ(error_of(R"({"type":7,"data":{}})").code, "invalid_frame") << "type must be a string";
  EXPECT_EQ(error_of(R"([1,2])").code, "invalid_json") << "a frame is an object";
}

TEST(ClientFrames, SyncWithoutAfterSeqAsksForTheLatest) {
  auto frame = decode_client_frame(R"({"type":"sync","data":{"conversation_id":"world","limit":1}})", 1024);
  ASSERT_TRUE(std::holds_alternative<SyncFrame>(frame));
  EXPECT_FALSE(std::get<SyncFrame>(frame).after_seq.has_value()) << "absent after_seq: the latest";
  EXPECT_EQ(std::get<SyncFrame>(frame).limit, 1u);
  auto plain = decode_client_frame(R"({"type":"sync","data":{"conversation_id":"world"}})", 1024);
  ASSERT_TRUE(std::holds_alternative<SyncFrame>(plain));
  EXPECT_EQ(std::get<SyncFrame>(plain).limit, 100u) << "the default limit";
}

TEST(ClientFrames, MessageTypesAreTextImageOrFile) {
  fb::MessageType t = fb::MessageType::Image;
  EXPECT_TRUE(parse_message_type("", t));
  EXPECT_EQ(t, fb::MessageType::Text) << "no message_type is text";
  EXPECT_TRUE(parse_message_type("file", t));
  EXPECT_EQ(t, fb::MessageType::File);
  EXPECT_FALSE(parse_message_type("Text", t)) << "names are case-sensitive";
}

TEST(ClientFrames, SyncLimitIsOneTo200) {
  for (const char* limit : {"0", "201", "500"}) {
    auto e = error_of(std::string(R"({"type":"sync","data":{"conversation_id":"world","limit":)") + limit + "}}");
    EXPECT_EQ(e.code, "invalid") << limit;
    EXPECT_EQ(e.request_type, "sync");
    EXPECT_NE(e.message.find("limit must be an integer from 1 to 200"), std::string::npos) << e.message;
  }
}

}  // namespace
}  // namespace imlog::gw
