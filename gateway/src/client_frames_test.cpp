#include "client_frames.h"

#include <gtest/gtest.h>

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
