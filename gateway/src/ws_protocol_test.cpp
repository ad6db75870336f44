// Subprotocol negotiation and the hello frame (docs/api/websocket.md, "Protocol versions").
#include "ws_protocol.h"

#include <gtest/gtest.h>
#include <rapidjson/document.h>

namespace imlog::gw {
namespace {

TEST(WsProtocol, NoneAskedForIsVersionOneUnnamed) {
  auto p = negotiate_subprotocol("");
  EXPECT_FALSE(p.refused());
  EXPECT_EQ(p.selected, "");
}

TEST(WsProtocol, TheFirstOfTheClientsListThisServerSpeaksIsSelected) {
  EXPECT_EQ(negotiate_subprotocol("imlog.v1.json").selected, "imlog.v1.json");
  EXPECT_EQ(negotiate_subprotocol("imlog.v2.cbor, imlog.v1.json").selected, "imlog.v1.json");
  EXPECT_EQ(negotiate_subprotocol("imlog.json,imlog.v1.json").selected, "imlog.json");
  EXPECT_EQ(negotiate_subprotocol(" \timlog.v1.json\t ").selected, "imlog.v1.json");
  EXPECT_EQ(negotiate_subprotocol("imlog.v1").selected, "imlog.v1");
  EXPECT_EQ(negotiate_subprotocol("imlog.v2, imlog.v1, imlog.v1.json").selected, "imlog.v1");
  EXPECT_TRUE(is_binary_protocol("imlog.v1"));
  EXPECT_FALSE(is_binary_protocol("imlog.v1.json"));
  EXPECT_FALSE(is_binary_protocol(""));
}

TEST(WsProtocol, OnlyUnknownNamesAreRefusedAndNamedBack) {
  for (const char* offer : {"imlog.v9.json", "imlog.v2", "IMLOG.V1", "IMLOG.V1.JSON", "chat, superchat", ","}) {
    auto p = negotiate_subprotocol(offer);
    EXPECT_TRUE(p.refused()) << offer;
    EXPECT_EQ(p.selected, "") << offer;
    EXPECT_EQ(p.offered, offer) << offer;
  }
}

TEST(WsProtocol, HelloNamesTheProtocolTheVersionsTheUserAndTheTime) {
  auto frame = hello_frame("", 60, 1763781813000);
  rapidjson::Document d;
  d.Parse(frame->c_str());
  ASSERT_FALSE(d.HasParseError()) << *frame;
  EXPECT_STREQ(d["type"].GetString(), "hello");
  const auto& data = d["data"];
  EXPECT_STREQ(data["protocol"].GetString(), "imlog.v1.json");
  EXPECT_EQ(data["version"].GetUint(), 1u);
  ASSERT_EQ(data["versions"].Size(), 1u);
  EXPECT_EQ(data["versions"][0].GetUint(), 1u);
  EXPECT_EQ(data["user_id"].GetUint64(), 60u);
  EXPECT_EQ(data["server_time"].GetInt64(), 1763781813000);
}

TEST(WsProtocol, HelloOfABinaryConnectionNamesTheBinaryProtocol) {
  rapidjson::Document d;
  d.Parse(hello_frame("imlog.v1", 60, 1)->c_str());
  EXPECT_STREQ(d["data"]["protocol"].GetString(), "imlog.v1");
  d.Parse(hello_frame("imlog.json", 60, 1)->c_str());
  EXPECT_STREQ(d["data"]["protocol"].GetString(), "imlog.v1.json");
}

}  // namespace
}  // namespace imlog::gw
