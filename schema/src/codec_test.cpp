#include "imlog/schema/codec.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "fixtures.h"

namespace imlog {
namespace {

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(Codec, EventRoundTrip) {
  for (int v = 1; v <= kSchemaVersion; ++v) {
    for (auto& [name, expected] : schema_fixtures::fixture_events(v)) {
      expected.schema_version = kSchemaVersion;  // encoding always writes the current version
      std::string bytes = encode_event(expected);
      auto view = read_event(bytes);
      ASSERT_TRUE(view) << name << ": " << view.error().to_string();
      fb::EventEnvelopeT back;
      (*view)->UnPackTo(&back);
      EXPECT_TRUE(back == expected) << name;
    }
  }
}

TEST(Codec, ZeroCopyViewReadsFields) {
  auto events = schema_fixtures::fixture_events(1);
  auto& msg = events.at(15).second;  // message_appended
  std::string bytes = encode_event(msg);
  auto view = read_event(bytes);
  ASSERT_TRUE(view);
  EXPECT_EQ(sv((*view)->stream()), "group_9");
  EXPECT_EQ((*view)->seq(), 6u);
  ASSERT_EQ((*view)->event_type(), fb::Event::MessageAppended);
  EXPECT_EQ(sv((*view)->event_as_MessageAppended()->content()), "héllo, wörld 👋");
  EXPECT_EQ(event_type_name((*view)->event_type()), "MessageAppended");
}

TEST(Codec, RejectsMalformedBytesWithoutCrashing) {
  std::string good = encode_event(schema_fixtures::fixture_events(1).at(0).second);
  EXPECT_FALSE(read_event(""));
  EXPECT_FALSE(read_event("not a flatbuffer at all"));
  EXPECT_FALSE(read_event(good.substr(0, good.size() / 2)));
  // Every single-byte corruption either fails verification or still decodes to a valid envelope;
  // none may crash (run under the sanitizers in CI builds to catch out-of-bounds reads).
  for (size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x5a);
    (void)read_event(bad);
  }
  auto r = read_event("xx");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), make_error_code(SchemaErrc::malformed));
}

TEST(Codec, UnknownUnionTypeIsNamed) {
  fb::EventEnvelopeT e;
  e.stream = "world";
  std::string bytes = encode_event(e);  // NONE event type
  auto r = read_event(bytes);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), make_error_code(SchemaErrc::unknown_type));
}

// Found by tests/fuzz (event_record): the FlatBuffers verifier accepts a union type whose table
// is absent, and unpacking or copying such an envelope dereferenced null.
TEST(Codec, UnionTypeWithoutBodyIsRefused) {
  flatbuffers::FlatBufferBuilder fbb;
  auto stream = fbb.CreateString("world");
  fb::EventEnvelopeBuilder eb(fbb);
  eb.add_stream(stream);
  eb.add_event_type(fb::Event::MessageAppended);
  fbb.Finish(eb.Finish());
  auto e = read_event(std::string_view(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize()));
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code(), make_error_code(SchemaErrc::missing_field));

  flatbuffers::FlatBufferBuilder cfb;
  auto cstream = cfb.CreateString("world");
  fb::CommandEnvelopeBuilder cb(cfb);
  cb.add_stream(cstream);
  cb.add_command_type(fb::Command::SendMessage);
  cfb.Finish(cb.Finish());
  auto c = read_command(std::string_view(reinterpret_cast<const char*>(cfb.GetBufferPointer()), cfb.GetSize()));
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code(), make_error_code(SchemaErrc::missing_field));
}

// Found by tests/fuzz (event_record): the verifier checks a vector's length prefix for 4-byte
// alignment only, so a forged delivery put its [ulong] recipients at 4 mod 8 and reading them
// was a misaligned load (undefined behaviour).
TEST(Codec, MisalignedIdVectorsAreRefused) {
  flatbuffers::FlatBufferBuilder fbb;
  auto ids = fbb.CreateVector(std::vector<uint64_t>{1, 2});
  fbb.Finish(ids);
  std::string_view buffer(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
  auto* vec = flatbuffers::GetRoot<flatbuffers::Vector<uint64_t>>(fbb.GetBufferPointer());
  EXPECT_TRUE(aligned_ids(vec, buffer));
  EXPECT_FALSE(aligned_ids(vec, buffer.substr(4)));
  EXPECT_TRUE(aligned_ids(nullptr, buffer));

  std::ifstream in(std::string(IMLOG_FUZZ_CORPUS_DIR) + "/event_record/delivery_misaligned_recipients.bin",
                   std::ios::binary);
  std::string forged((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_FALSE(forged.empty());
  auto d = read_delivery(forged);
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code(), make_error_code(SchemaErrc::malformed));
}

TEST(Codec, CommandRoundTrip) {
  for (int v = 1; v <= kSchemaVersion; ++v) {
    for (auto& [name, expected] : schema_fixtures::fixture_commands(v)) {
      expected.schema_version = kSchemaVersion;
      auto bytes = encode_command(expected);
      auto view = read_command(bytes);
      ASSERT_TRUE(view) << name;
      fb::CommandEnvelopeT back;
      (*view)->UnPackTo(&back);
      EXPECT_TRUE(back == expected) << name;
    }
  }
}

TEST(Codec, GroupSettingNamesRoundTripAndUnknownValuesHaveNone) {
  for (auto p : {fb::JoinPolicy::Private, fb::JoinPolicy::Public}) {
    fb::JoinPolicy back{};
    ASSERT_TRUE(parse_join_policy(join_policy_name(p), back)) << join_policy_name(p);
    EXPECT_EQ(back, p);
  }
  for (auto r : {fb::HistoryRule::All, fb::HistoryRule::FromJoin}) {
    fb::HistoryRule back{};
    ASSERT_TRUE(parse_history_rule(history_rule_name(r), back)) << history_rule_name(r);
    EXPECT_EQ(back, r);
  }
  EXPECT_EQ(join_policy_name(fb::JoinPolicy::Public), "public");
  EXPECT_EQ(history_rule_name(fb::HistoryRule::FromJoin), "from_join");
  EXPECT_EQ(join_policy_name(static_cast<fb::JoinPolicy>(7)), "");
  EXPECT_EQ(history_rule_name(static_cast<fb::HistoryRule>(-1)), "");
  fb::JoinPolicy p{};
  fb::HistoryRule r{};
  EXPECT_FALSE(parse_join_policy("Public", p));
  EXPECT_FALSE(parse_join_policy("", p));
  EXPECT_FALSE(parse_history_rule("fromjoin", r));
}

// A group created before schema 3 carries no settings: readers tell "absent" from any value.
TEST(Codec, AGroupCreatedBeforeVersion3HasNoSettings) {
  auto events = schema_fixtures::fixture_events(1);
  auto& gc = events.at(10).second;  // group_created
  std::string bytes = encode_event(gc);
  auto view = read_event(bytes);
  ASSERT_TRUE(view);
  auto* g = (*view)->event_as_GroupCreated();
  ASSERT_NE(g, nullptr);
  EXPECT_FALSE(g->join_policy().has_value());
  EXPECT_FALSE(g->history().has_value());
  auto removed = encode_event(events.at(13).second);  // member_removed
  auto rv = read_event(removed);
  ASSERT_TRUE(rv);
  ASSERT_NE((*rv)->event_as_MemberRemoved(), nullptr);
  EXPECT_FALSE((*rv)->event_as_MemberRemoved()->ban());
}

// The compatibility promise: every committed fixture of every schema version still decodes to
// exactly the event it was written from.
TEST(Codec, CommittedFixturesOfEveryVersionStillDecode) {
  int versions_seen = 0;
  for (int v = 1; v <= kSchemaVersion; ++v) {
    std::filesystem::path dir = std::filesystem::path(IMLOG_FIXTURE_DIR) / ("v" + std::to_string(v));
    // A version number reserved for a change not merged here has no fixtures and no directory.
    if (schema_fixtures::fixture_events(v).empty() && schema_fixtures::fixture_commands(v).empty() &&
        !std::filesystem::exists(dir)) {
      ++versions_seen;
      continue;
    }
    ASSERT_TRUE(std::filesystem::is_directory(dir)) << dir << " is missing: run imlog-schema-fixtures";
    std::set<std::string> on_disk;
    for (auto& f : std::filesystem::directory_iterator(dir)) on_disk.insert(f.path().filename());
    for (auto& [name, expected] : schema_fixtures::fixture_events(v)) {
      std::string file = "event_" + name + ".bin";
      ASSERT_TRUE(on_disk.erase(file)) << dir / file << " is missing";
      std::string bytes = read_file(dir / file);  // the view points into these bytes
      auto view = read_event(bytes);
      ASSERT_TRUE(view) << file << ": " << view.error().to_string();
      EXPECT_EQ((*view)->schema_version(), v) << file;
      fb::EventEnvelopeT back;
      (*view)->UnPackTo(&back);
      EXPECT_TRUE(back == expected) << file << " decodes differently";
    }
    for (auto& [name, expected] : schema_fixtures::fixture_commands(v)) {
      std::string file = "command_" + name + ".bin";
      ASSERT_TRUE(on_disk.erase(file)) << dir / file << " is missing";
      std::string bytes = read_file(dir / file);
      auto view = read_command(bytes);
      ASSERT_TRUE(view) << file;
      fb::CommandEnvelopeT back;
      (*view)->UnPackTo(&back);
      EXPECT_TRUE(back == expected) << file << " decodes differently";
    }
    EXPECT_TRUE(on_disk.empty()) << "fixtures without an expectation in " << dir;
    ++versions_seen;
  }
  EXPECT_EQ(versions_seen, kSchemaVersion);
}

}  // namespace
}  // namespace imlog
