#include "imlog/tasks/task_records.h"

#include <gtest/gtest.h>

#include "imlog/schema/codec.h"

namespace imlog {
namespace {

std::string some_event() {
  fb::EventEnvelopeT e;
  e.stream = "group_9";
  e.seq = 12;
  e.event_id = 99;
  e.trace_id = "0123456789abcdef";
  e.event.Set(fb::MessageAppendedT{{}, fb::MessageType::Text, "hi"});
  return encode_event(e);
}

fb::FanoutTaskT some_task() {
  fb::FanoutTaskT t;
  t.stream = "group_9";
  t.seq = 12;
  t.page = 1;
  t.pages = 3;
  t.task_id = task_id(t.stream, t.seq, t.page);
  t.recipients = {4, 5, 6};
  auto ev = some_event();
  t.event.assign(ev.begin(), ev.end());
  return t;
}

// A task's nested event passes read_event's checks too: here an event type whose table is absent
// (the verifier accepts it; every reader would dereference null).
TEST(TaskRecords, ANestedEventWithoutBodyIsRefused) {
  flatbuffers::FlatBufferBuilder fbb;
  auto stream = fbb.CreateString("group_9");
  fb::EventEnvelopeBuilder eb(fbb);
  eb.add_stream(stream);
  eb.add_event_type(fb::Event::MessageAppended);
  fbb.Finish(eb.Finish());
  fb::FanoutTaskT t = some_task();
  t.event.assign(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
  auto r = read_task(encode_task(t));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), make_error_code(SchemaErrc::missing_field));
}

TEST(TaskRecords, ATaskRoundTripsWithItsNestedEvent) {
  auto bytes = encode_task(some_task());
  auto t = read_task(bytes);
  ASSERT_TRUE(t) << t.error().to_string();
  EXPECT_EQ(sv((*t)->task_id()), "group_9/12/1");
  EXPECT_EQ((*t)->pages(), 3u);
  EXPECT_EQ(std::vector<uint64_t>((*t)->recipients()->begin(), (*t)->recipients()->end()), (std::vector<uint64_t>{4, 5, 6}));
  EXPECT_EQ((*t)->event_nested_root()->seq(), 12u);
  EXPECT_EQ(task_key("group_9", 1), "group_9/1");
}

TEST(TaskRecords, GarbageAndIncompleteTasksAreErrorsNotCrashes) {
  for (std::string bad : {std::string(), std::string("x"), std::string("this is not a task"), std::string(64, '\xff')}) {
    auto t = read_task(bad);
    ASSERT_FALSE(t) << "accepted " << bad.size() << " bytes";
    EXPECT_NE(t.error().message().find("fan-out task"), std::string::npos) << t.error().message();
  }
  auto no_event = some_task();
  no_event.event.clear();
  auto t = read_task(encode_task(no_event));
  ASSERT_FALSE(t);
  EXPECT_NE(t.error().message().find("without its event"), std::string::npos) << t.error().message();
  auto no_id = some_task();
  no_id.task_id.clear();
  EXPECT_FALSE(read_task(encode_task(no_id)));
  // A truncated task fails verification.
  auto whole = encode_task(some_task());
  EXPECT_FALSE(read_task(std::string_view(whole).substr(0, whole.size() / 2)));
}

TEST(TaskRecords, ADeadLetterKeepsTheOriginalRecordAndWhy) {
  Record r{"im.tasks", 2, 41, 0, "group_9/1", "original bytes"};
  auto out = dead_letter(r, "corrupt task: x", 0, 1234);
  EXPECT_EQ(out.key, "group_9/1");
  auto d = read_dead_letter(out.value);
  ASSERT_TRUE(d);
  EXPECT_EQ(sv((*d)->reason()), "corrupt task: x");
  EXPECT_EQ(sv((*d)->source_topic()), "im.tasks");
  EXPECT_EQ((*d)->source_partition(), 2);
  EXPECT_EQ((*d)->source_offset(), 41);
  EXPECT_EQ((*d)->failed_at_ms(), 1234);
  EXPECT_EQ(std::string((*d)->value()->begin(), (*d)->value()->end()), "original bytes");
}

TEST(TaskRecords, ADeadLetterOfATaskCarriesItsTraceId) {
  auto t = some_task();
  t.trace_id = "fedcba9876543210";
  Record r{"im.tasks", 0, 7, 0, "group_9/1", encode_task(t)};
  auto letter = dead_letter(r, "delivery failed", 5, 1);
  auto d = read_dead_letter(letter.value);
  ASSERT_TRUE(d);
  EXPECT_EQ(sv((*d)->trace_id()), "fedcba9876543210");
  // A task written before FanoutTask.trace_id: its event's.
  auto old = encode_task(some_task());
  auto task = read_task(old);
  ASSERT_TRUE(task);
  EXPECT_EQ(trace_of(**task), "0123456789abcdef");
}

}  // namespace
}  // namespace imlog
