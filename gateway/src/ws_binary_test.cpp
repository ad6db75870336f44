// The binary form (imlog/gateway/ws_binary.h): server frames survive JSON → binary → JSON, and
// hostile bytes get an error naming what is wrong.
#include "imlog/gateway/ws_binary.h"

#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include "client_frames.h"
#include "imlog/testing/engine_harness.h"
#include "imlog/gateway/websocket_generated.h"
#include "push.h"
#include "ws_frames.h"
#include "ws_protocol.h"

namespace imlog::gw {
namespace {

rapidjson::Document parse(const std::string& text) {
  rapidjson::Document d;
  d.Parse(text.c_str());
  return d;
}

std::string round_trip(const std::string& json) {
  std::string bytes, why, back;
  EXPECT_TRUE(ws_frame_to_binary(json, bytes, why)) << why;
  WsBinaryError error;
  EXPECT_TRUE(ws_frame_from_binary(bytes, back, error)) << error.message;
  return back;
}

TEST(WsBinary, ServerFramesSurviveTheRoundTripFieldForField) {
  for (const std::string json : {
           R"({"type":"new-message","data":{"message_id":"912181524521025536","conversation_id":"single_10_60","seq_id":42,"sender_id":10,"content":"héllo \"x\"\n","message_type":"text","client_msg_id":"c-17","created_at":1763781813000}})",
           R"({"type":"sync-result","data":{"conversation_id":"single_1_2","after_seq":0,"messages":[],"has_more":false}})",
           R"({"type":"hello","data":{"protocol":"imlog.v1","version":1,"versions":[1],"user_id":60,"server_time":1763781813000}})",
           R"({"type":"error","data":{"code":"overloaded","message":"m","request_type":"sync","retry_after_ms":100}})",
           R"({"type":"member-removed","data":{"conversation_id":"group_7","group_id":7,"seq_id":3,"created_at":5,"user_id":2,"removed_by":1,"banned":false}})",
           R"({"type":"status-ack","data":{"user_id":60,"status":"away","last_seen":1}})",
           R"({"type":"user-unblocked","data":{"user_id":6,"created_at":1}})",
           R"({"type":"message-ack","data":{"client_msg_id":"c-1","conversation_id":"single_1_2","message_id":"9","seq_id":4,"trace_id":"00ab12cd34ef5678"}})",
           R"({"type":"search-result","data":{"q":"café 你好","conversation_id":"group_7","results":[{"message":{"message_id":"9","conversation_id":"group_7","seq_id":4,"sender_id":1,"content":"le café 你好吗","message_type":"text","client_msg_id":"c-1","created_at":5},"snippet":[{"text":"le ","hit":false},{"text":"café","hit":true}]}],"next_before":"9"}})",
       }) {
    EXPECT_EQ(parse(round_trip(json)), parse(json)) << json << "\n → " << round_trip(json);
  }
}

TEST(WsBinary, TheDecodedTextIsTheJsonFormsOwn) {
  // Compact, fields in the order the server writes them: a reader of the JSON form (the load
  // generator's field scanner, say) reads the decoded binary form the same way.
  const std::string json =
      R"({"type":"new-message","data":{"message_id":"9","conversation_id":"single_1_2","seq_id":42,"sender_id":1,"content":"a \"b\"\n","message_type":"text","client_msg_id":"c-1","created_at":5}})";
  EXPECT_EQ(round_trip(json), json);
}

// Every push the server renders, with every optional field it may carry, has its binary frame:
// a field or type missing from websocket.fbs would fail here rather than on a client.
template <class T>
std::string pushed(T event, const std::string& stream = "group_7") {
  fb::EventEnvelopeT e;
  e.stream = stream;
  e.seq = 3;
  e.event_id = 42;
  e.timestamp_ms = 1'700'000'000'000;
  e.actor = 1;
  e.event.Set(std::move(event));
  std::string bytes = encode_event(e);
  auto read = read_event(bytes);
  EXPECT_TRUE(read) << read.error().to_string();
  auto push = read ? render_push(**read, testing::test_keys()) : std::nullopt;
  EXPECT_TRUE(push.has_value()) << fb::EnumNameEvent(e.event.type);
  return push ? *push->frame : std::string();
}

TEST(WsBinary, EveryServerFrameHasItsBinaryForm) {
  fb::MessageAppendedT appended;
  appended.content = "hi";
  fb::GroupCreatedT created;
  created.members = {2, 3};
  fb::MemberJoinedT joined;
  joined.invited_by = 2;
  fb::GroupSettingsChangedT settings;
  settings.join_policy = fb::JoinPolicy::Public;
  settings.history = fb::HistoryRule::FromJoin;
  fb::ProfileUpdatedT profile;
  profile.nickname = "n";
  profile.avatar_url = "a";
  profile.signature = "s";
  std::vector<std::string> frames = {
      pushed(appended, "single_1_2"), pushed(fb::MessageRecalledT{}), pushed(fb::ReadMarkedT{}), pushed(created),
      pushed(joined), pushed(fb::MemberLeftT{}), pushed(fb::MemberRemovedT{}), pushed(fb::MemberUnbannedT{}),
      pushed(settings), pushed(fb::GroupSettingsChangedT{}), pushed(fb::RoleChangedT{}),
      pushed(fb::FriendRequestedT{}, "single_1_2"), pushed(fb::FriendAcceptedT{}, "single_1_2"),
      pushed(fb::FriendRejectedT{}, "single_1_2"), pushed(fb::FriendRemovedT{}, "single_1_2"),
      pushed(fb::UserBlockedT{}, "single_1_2"), pushed(fb::UserUnblockedT{}, "single_1_2"),
      pushed(profile, "user_1"), pushed(fb::ProfileUpdatedT{}, "user_1"), pushed(fb::SettingsUpdatedT{}, "user_1"),
      pushed(fb::FriendGroupSetT{}, "user_1"), pushed(fb::MessagesExpiredT{{}, 3}),
      pushed(fb::UserErasedT{{}, 1}, "user_1"),
      *hello_frame("imlog.v1", 1, 2),
      *error_frame("overloaded", "m", "c-1", "send-message", std::chrono::milliseconds(100)),
  };
  for (const auto& json : frames) {
    std::string bytes, why;
    EXPECT_TRUE(ws_frame_to_binary(json, bytes, why)) << why;
  }
}

TEST(WsBinary, AbsentOptionalFieldsStayAbsent) {
  auto d = parse(round_trip(R"({"type":"sync-result","data":{"conversation_id":"world","messages":[],"has_more":true}})"));
  EXPECT_FALSE(d["data"].HasMember("after_seq"));
  d = parse(round_trip(R"({"type":"member-joined","data":{"conversation_id":"group_7","group_id":7,"seq_id":3,"created_at":5,"user_id":2}})"));
  EXPECT_FALSE(d["data"].HasMember("invited_by"));
}

TEST(WsBinary, AFrameTheSchemaLacksIsRefusedWithItsName) {
  std::string out, why;
  EXPECT_FALSE(ws_frame_to_binary(R"({"type":"no-such-frame","data":{}})", out, why));
  EXPECT_NE(why.find("no-such-frame"), std::string::npos) << why;
  EXPECT_FALSE(ws_frame_to_binary(R"({"type":"pong","data":{"ts":1,"extra":2}})", out, why));
  EXPECT_NE(why.find("extra"), std::string::npos) << why;
}

std::string client_frame(const std::function<flatbuffers::Offset<ws::Frame>(flatbuffers::FlatBufferBuilder&)>& make) {
  flatbuffers::FlatBufferBuilder b;
  ws::FinishFrameBuffer(b, make(b));
  return {reinterpret_cast<const char*>(b.GetBufferPointer()), b.GetSize()};
}

TEST(WsBinary, ClientFramesDecodeWithTheJsonFormsRules) {
  auto send = client_frame([](auto& b) {
    auto m = ws::CreateSendMessageDirect(b, "single_1_2", "c-1", "hi", nullptr);
    return ws::CreateFrame(b, ws::Data::SendMessage, m.Union());
  });
  auto frame = decode_binary_client_frame(send, 1000);
  auto* m = std::get_if<SendMessageFrame>(&frame);
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->conversation, "single_1_2");
  EXPECT_EQ(m->client_msg_id, "c-1");
  EXPECT_EQ(m->content, "hi");

  auto sync = client_frame([](auto& b) {
    auto s = ws::CreateSyncDirect(b, "group_7", 0, 500);
    return ws::CreateFrame(b, ws::Data::Sync, s.Union());
  });
  frame = decode_binary_client_frame(sync, 1000);
  auto* e = std::get_if<FrameError>(&frame);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->code, "invalid");
  EXPECT_NE(e->message.find("limit must be an integer from 1 to 200, got 500"), std::string::npos) << e->message;

  auto from_zero = client_frame([](auto& b) {
    auto s = ws::CreateSyncDirect(b, "group_7", 0);
    return ws::CreateFrame(b, ws::Data::Sync, s.Union());
  });
  frame = decode_binary_client_frame(from_zero, 1000);
  auto* s = std::get_if<SyncFrame>(&frame);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->after_seq, std::optional<uint64_t>(0));
  EXPECT_EQ(s->limit, 100u);
}

FrameError error_of(const std::string& bytes) {
  auto frame = decode_binary_client_frame(bytes, 1000);
  auto* e = std::get_if<FrameError>(&frame);
  return e ? *e : FrameError{"(decoded)", "", "", ""};
}

TEST(WsBinary, HostileBytesGetAnErrorNamingWhatIsWrong) {
  EXPECT_EQ(error_of("abc").code, "invalid_binary");
  EXPECT_NE(error_of("abc").message.find("shorter than"), std::string::npos);
  EXPECT_NE(error_of(std::string("\x08\0\0\0JSON\0\0\0\0", 12)).message.find("file identifier"), std::string::npos);
  auto ping = client_frame([](auto& b) { return ws::CreateFrame(b, ws::Data::Ping, ws::CreatePing(b).Union()); });
  std::string broken = ping;
  broken[0] = '\x7f';  // the root offset points past the end
  EXPECT_NE(error_of(broken).message.find("verification"), std::string::npos) << error_of(broken).message;
  auto none = client_frame([](auto& b) { return ws::CreateFrame(b); });
  EXPECT_EQ(error_of(none).code, "invalid_frame");
  auto hello = client_frame([](auto& b) {
    return ws::CreateFrame(b, ws::Data::Hello, ws::CreateHelloDirect(b, "imlog.v1").Union());
  });
  EXPECT_EQ(error_of(hello).code, "unknown_type");  // a server frame, not a request
  auto future = client_frame([](auto& b) { return ws::CreateFrame(b, static_cast<ws::Data>(200), ws::CreatePing(b).Union()); });
  EXPECT_EQ(error_of(future).code, "unknown_type");
  auto bad_utf8 = client_frame([](auto& b) {
    auto m = ws::CreateSendMessageDirect(b, "single_1_2", "c-1", "\xff\xfe", nullptr);
    return ws::CreateFrame(b, ws::Data::SendMessage, m.Union());
  });
  EXPECT_EQ(error_of(bad_utf8).code, "invalid_utf8");
  EXPECT_TRUE(std::holds_alternative<PingFrame>(decode_binary_client_frame(ping, 1000)));
}

}  // namespace
}  // namespace imlog::gw
