// Unit tests of the validity rule (validity.h; docs/architecture.md, "Epochs and fencing"): an
// event is valid iff its epoch is the token of the latest EpochStarted before it in its partition
// and it links to the partition's last valid record.

#include "imlog/engine/validity.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "imlog/schema/codec.h"

namespace imlog {
namespace {

constexpr uint64_t kA = 0xA11CE, kB = 0xB0B;

// Encoded events, kept alive for the views handed to the filter.
class Events {
 public:
  const fb::EventEnvelope& marker(uint64_t token, int32_t partition) {
    fb::EventEnvelopeT e;
    e.event_id = ++ids_;
    e.epoch = token;
    fb::EpochStartedT ep;
    ep.token = token;
    ep.partition = partition;
    ep.writer = "engine-" + std::to_string(token);
    e.event.Set(std::move(ep));
    return add(e);
  }
  // A marker with a chosen event id (a new owner's clock may lag its predecessor's ids).
  const fb::EventEnvelope& marker_with_id(uint64_t token, uint64_t id) {
    fb::EventEnvelopeT e;
    e.event_id = id;
    e.epoch = token;
    fb::EpochStartedT ep;
    ep.token = token;
    e.event.Set(std::move(ep));
    return add(e);
  }
  // A message linked to the record whose id is `prev`, as the sequencer writes them.
  const fb::EventEnvelope& linked(uint64_t epoch, uint64_t prev) {
    fb::EventEnvelopeT e;
    e.stream = "world";
    e.seq = ++seq_;
    e.event_id = ++ids_;
    e.actor = 1;
    e.epoch = epoch;
    e.prev_event_id = prev;
    e.event.Set(fb::MessageAppendedT{{}, fb::MessageType::Text, "hi"});
    return add(e);
  }
  // A remembered refusal (CommandRefused, a control record) linked to `prev`, as the sequencer
  // writes them: seq 0.
  const fb::EventEnvelope& refusal(uint64_t epoch, uint64_t prev) {
    fb::EventEnvelopeT e;
    e.stream = "group_7";
    e.event_id = ++ids_;
    e.actor = 2;
    e.epoch = epoch;
    e.prev_event_id = prev;
    e.client_msg_id = "c-refused";
    e.event.Set(fb::CommandRefusedT{{}, "not_member", "not a member of group 7"});
    return add(e);
  }
  // An unlinked message (prev_event_id 0), as written before links existed.
  const fb::EventEnvelope& message(uint64_t epoch) {
    fb::EventEnvelopeT e;
    e.stream = "world";
    e.seq = ++seq_;
    e.event_id = ++ids_;
    e.actor = 1;
    e.epoch = epoch;
    e.event.Set(fb::MessageAppendedT{{}, fb::MessageType::Text, "hi"});
    return add(e);
  }

 private:
  const fb::EventEnvelope& add(const fb::EventEnvelopeT& e) {
    bytes_.push_back(encode_event(e));
    auto view = read_event(bytes_.back());
    if (!view) ADD_FAILURE() << view.error().to_string();
    return **view;
  }
  std::deque<std::string> bytes_;
  uint64_t ids_ = 0;
  uint64_t seq_ = 0;
};

TEST(Validity, EventsBeforeAnyEpochStartedAreInvalid) {
  Events ev;
  EpochFilter f;
  EXPECT_EQ(f.token(0), 0u);
  EXPECT_FALSE(f.accept(0, ev.message(kA)));
  EXPECT_FALSE(f.accept(0, ev.message(0))) << "epoch 0 is no epoch";
  EXPECT_EQ(f.token(0), 0u);
}

TEST(Validity, AfterAMarkerOnlyItsTokenIsValid) {
  Events ev;
  EpochFilter f;
  EXPECT_TRUE(f.accept(0, ev.marker(kA, 0))) << "the marker itself is valid";
  EXPECT_EQ(f.token(0), kA);
  EXPECT_TRUE(f.accept(0, ev.message(kA)));
  EXPECT_TRUE(f.accept(0, ev.message(kA)));
  EXPECT_FALSE(f.accept(0, ev.message(kB))) << "a writer that never opened an epoch";
  EXPECT_FALSE(f.accept(0, ev.message(0)));
  EXPECT_TRUE(f.accept(0, ev.message(kA))) << "an invalid event does not close the epoch";
}

TEST(Validity, ANewMarkerFencesTheOldWriter) {
  Events ev;
  EpochFilter f;
  ASSERT_TRUE(f.accept(0, ev.marker(kA, 0)));
  EXPECT_TRUE(f.accept(0, ev.message(kA)));
  ASSERT_TRUE(f.accept(0, ev.marker(kB, 0)));
  EXPECT_EQ(f.token(0), kB);
  EXPECT_FALSE(f.accept(0, ev.message(kA))) << "A is a zombie now";
  EXPECT_TRUE(f.accept(0, ev.message(kB)));
  EXPECT_FALSE(f.accept(0, ev.message(kA))) << "interleaved zombie writes stay invalid";
  EXPECT_TRUE(f.accept(0, ev.message(kB)));
  // A takes the partition back with a fresh marker: B is fenced in turn.
  ASSERT_TRUE(f.accept(0, ev.marker(kA, 0)));
  EXPECT_TRUE(f.accept(0, ev.message(kA)));
  EXPECT_FALSE(f.accept(0, ev.message(kB)));
}

TEST(Validity, PartitionsAreIndependent) {
  Events ev;
  EpochFilter f;
  ASSERT_TRUE(f.accept(0, ev.marker(kA, 0)));
  EXPECT_FALSE(f.accept(1, ev.message(kA))) << "partition 1 has no epoch yet";
  ASSERT_TRUE(f.accept(1, ev.marker(kB, 1)));
  EXPECT_TRUE(f.accept(0, ev.message(kA)));
  EXPECT_FALSE(f.accept(0, ev.message(kB)));
  EXPECT_TRUE(f.accept(1, ev.message(kB)));
  EXPECT_FALSE(f.accept(1, ev.message(kA)));
  EXPECT_EQ(f.token(0), kA);
  EXPECT_EQ(f.token(1), kB);
  EXPECT_EQ(f.token(2), 0u);
}

TEST(Validity, RestoreResumesAtAStoredToken) {
  Events ev;
  EpochFilter f;
  f.restore(3, {kB, 0});
  EXPECT_EQ(f.token(3), kB);
  EXPECT_TRUE(f.accept(3, ev.message(kB)));
  EXPECT_FALSE(f.accept(3, ev.message(kA)));
  EXPECT_FALSE(f.accept(4, ev.message(kB))) << "only the restored partition";
  // A restored token is replaced by the next marker like any other.
  ASSERT_TRUE(f.accept(3, ev.marker(kA, 3)));
  EXPECT_FALSE(f.accept(3, ev.message(kB)));
  // Restoring "no epoch yet" makes everything but a marker invalid again.
  f.restore(3, {});
  EXPECT_EQ(f.token(3), 0u);
  EXPECT_FALSE(f.accept(3, ev.message(kA)));
  EXPECT_FALSE(f.accept(3, ev.message(0)));
}

TEST(Validity, TwoReadersOfTheSameLogAgree) {
  // The rule is a function of the partition's events alone: a reader that resumes from a stored
  // (offset, token) reaches the same verdicts as one that read from the start.
  Events ev;
  std::deque<std::pair<const fb::EventEnvelope*, int>> log;  // event, expected verdict
  log.push_back({&ev.message(kA), 0});
  log.push_back({&ev.marker(kA, 0), 1});
  log.push_back({&ev.message(kA), 1});
  log.push_back({&ev.marker(kB, 0), 1});
  log.push_back({&ev.message(kA), 0});
  log.push_back({&ev.message(kB), 1});
  log.push_back({&ev.message(kA), 0});
  log.push_back({&ev.message(kB), 1});
  for (size_t resume = 0; resume <= log.size(); ++resume) {
    EpochFilter from_start;
    for (size_t i = 0; i < resume; ++i) from_start.accept(0, *log[i].first);
    EpochFilter::State stored = from_start.state(0);
    EpochFilter resumed;
    resumed.restore(0, stored);
    for (size_t i = resume; i < log.size(); ++i) {
      bool a = from_start.accept(0, *log[i].first);
      bool b = resumed.accept(0, *log[i].first);
      EXPECT_EQ(a, log[i].second == 1) << "event " << i;
      EXPECT_EQ(a, b) << "event " << i << " resuming at " << resume;
    }
  }
}

TEST(Validity, ASecondCopyOfARecordIsInvalid) {
  // A broker may store a producer's retry twice (librdkafka's mock does when an answer is lost):
  // the copy carries the same event id, and ids only grow within a partition.
  Events ev;
  EpochFilter f;
  EXPECT_TRUE(f.accept(0, ev.marker(kA, 0)));
  const auto& m = ev.message(kA);
  EXPECT_TRUE(f.accept(0, m));
  EXPECT_FALSE(f.accept(0, m));
  EXPECT_TRUE(f.accept(0, ev.message(kA)));
}

TEST(Validity, AMarkerWithALowerIdStillOpensItsEpoch) {
  Events ev;
  EpochFilter f;
  EXPECT_TRUE(f.accept(0, ev.marker(kA, 0)));
  EXPECT_TRUE(f.accept(0, ev.message(kA)));
  EXPECT_TRUE(f.accept(0, ev.message(kA)));
  EXPECT_TRUE(f.accept(0, ev.marker_with_id(kB, 1)));  // below A's last id
  EXPECT_EQ(f.token(0), kB);
  EXPECT_FALSE(f.accept(0, ev.message(kA)));  // the zombie, whatever its id
  EXPECT_TRUE(f.accept(0, ev.message(kB)));
}

TEST(Validity, ALostRecordMakesTheRestOfItsEpochInvalid) {
  // The log lost one batch of epoch A (its append failed) but stored the next, already in
  // flight: that batch and everything A writes after it link past the hole, so no reader applies
  // them, and A's seqs stay gapless. A new epoch starts a fresh chain at its marker.
  Events ev;
  EpochFilter f;
  const auto& a = ev.marker(kA, 0);
  ASSERT_TRUE(f.accept(0, a));
  const auto& e1 = ev.linked(kA, a.event_id());
  EXPECT_TRUE(f.accept(0, e1));
  const auto& lost = ev.linked(kA, e1.event_id());  // never stored: not fed to the filter
  const auto& e3 = ev.linked(kA, lost.event_id());
  EXPECT_FALSE(f.accept(0, e3)) << "it follows a record no reader has";
  const auto& e4 = ev.linked(kA, e3.event_id());
  EXPECT_FALSE(f.accept(0, e4)) << "the rest of the broken epoch is invalid too";
  EXPECT_EQ(f.state(0), (EpochFilter::State{kA, e1.event_id()})) << "the link stays at the last valid record";
  const auto& b = ev.marker(kB, 0);
  ASSERT_TRUE(f.accept(0, b));
  EXPECT_TRUE(f.accept(0, ev.linked(kB, b.event_id())));
  EXPECT_FALSE(f.accept(0, ev.linked(kA, e4.event_id()))) << "A is fenced as well";
}

TEST(Validity, ASecondCopyOfALinkedEventIsInvalid) {
  Events ev;
  EpochFilter f;
  const auto& a = ev.marker(kA, 0);
  ASSERT_TRUE(f.accept(0, a));
  const auto& e1 = ev.linked(kA, a.event_id());
  EXPECT_TRUE(f.accept(0, e1));
  EXPECT_FALSE(f.accept(0, e1)) << "the copy links to the marker, which is no longer the last record";
  EXPECT_TRUE(f.accept(0, ev.linked(kA, e1.event_id())));
}

TEST(Validity, ASecondCopyOfTheCurrentMarkerChangesNothing) {
  Events ev;
  EpochFilter f;
  const auto& a = ev.marker(kA, 0);
  ASSERT_TRUE(f.accept(0, a));
  const auto& e1 = ev.linked(kA, a.event_id());
  ASSERT_TRUE(f.accept(0, e1));
  EXPECT_TRUE(f.accept(0, a)) << "a marker is valid";
  EXPECT_EQ(f.state(0), (EpochFilter::State{kA, e1.event_id()})) << "but the copy does not restart the chain";
  EXPECT_TRUE(f.accept(0, ev.linked(kA, e1.event_id())));
}

TEST(Validity, ARestoredStateKeepsCheckingLinks) {
  Events ev;
  EpochFilter f;
  const auto& a = ev.marker(kA, 0);
  const auto& e1 = ev.linked(kA, a.event_id());
  f.restore(0, {kA, e1.event_id()});
  EXPECT_FALSE(f.accept(0, e1)) << "a copy of the record before the resume point";
  EXPECT_FALSE(f.accept(0, ev.linked(kA, a.event_id())));
  EXPECT_TRUE(f.accept(0, ev.linked(kA, e1.event_id())));
  // A position stored without a link (an older version) takes the next event of its epoch.
  EpochFilter older;
  older.restore(0, {kA, 0});
  const auto& any = ev.linked(kA, 12345);
  EXPECT_TRUE(older.accept(0, any));
  EXPECT_FALSE(older.accept(0, ev.linked(kA, 12345))) << "and checks links from there";
  EXPECT_TRUE(older.accept(0, ev.linked(kA, any.event_id())));
}

TEST(Validity, ReadersResumingAnywhereAgreeOnABrokenEpoch) {
  Events ev;
  std::vector<std::pair<const fb::EventEnvelope*, int>> log;  // event, expected verdict
  const auto& a = ev.marker(kA, 0);
  log.push_back({&a, 1});
  const auto& e1 = ev.linked(kA, a.event_id());
  log.push_back({&e1, 1});
  const auto& lost = ev.linked(kA, e1.event_id());
  const auto& e3 = ev.linked(kA, lost.event_id());
  log.push_back({&e3, 0});
  const auto& e4 = ev.linked(kA, e3.event_id());
  log.push_back({&e4, 0});
  const auto& b = ev.marker(kB, 0);
  log.push_back({&b, 1});
  const auto& f1 = ev.linked(kB, b.event_id());
  log.push_back({&f1, 1});
  log.push_back({&ev.linked(kA, e4.event_id()), 0});
  log.push_back({&f1, 0});
  log.push_back({&ev.linked(kB, f1.event_id()), 1});
  for (size_t resume = 0; resume <= log.size(); ++resume) {
    EpochFilter from_start;
    for (size_t i = 0; i < resume; ++i) from_start.accept(0, *log[i].first);
    EpochFilter resumed;
    resumed.restore(0, from_start.state(0));
    for (size_t i = resume; i < log.size(); ++i) {
      bool x = from_start.accept(0, *log[i].first);
      bool y = resumed.accept(0, *log[i].first);
      EXPECT_EQ(x, log[i].second == 1) << "event " << i;
      EXPECT_EQ(x, y) << "event " << i << " resuming at " << resume;
    }
  }
}

// A refusal record is a record of its epoch: the filter takes it like an event, the next event
// links to it, and a reader that dropped it before its filter would lose the rest of the epoch;
// a zombie's refusal is invalid like its events.
TEST(EpochFilter, TheLinkRunsThroughRefusalRecords) {
  Events ev;
  EpochFilter f;
  const auto& m = ev.marker(kA, 0);
  ASSERT_TRUE(f.accept(0, m));
  const auto& first = ev.linked(kA, m.event_id());
  ASSERT_TRUE(f.accept(0, first));
  const auto& refused = ev.refusal(kA, first.event_id());
  EXPECT_TRUE(f.accept(0, refused));
  EXPECT_TRUE(is_control_record(refused.event_type()));
  const auto& next = ev.linked(kA, refused.event_id());
  EXPECT_TRUE(f.accept(0, next));
  EXPECT_EQ(f.state(0).link, next.event_id());

  // Skipping the refusal before the filter breaks the chain: the next event is unlinked to it.
  EpochFilter skipping;
  ASSERT_TRUE(skipping.accept(0, m));
  ASSERT_TRUE(skipping.accept(0, first));
  EXPECT_FALSE(skipping.accept(0, next));

  // A zombie's refusal (an older epoch's token) is invalid, as its events are.
  const auto& b = ev.marker(kB, 0);
  ASSERT_TRUE(f.accept(0, b));
  EXPECT_FALSE(f.accept(0, ev.refusal(kA, next.event_id())));
  // ... and one linked to a record the reader never had (a lost batch) too.
  EXPECT_FALSE(f.accept(0, ev.refusal(kB, 424242)));
  EXPECT_TRUE(f.accept(0, ev.refusal(kB, b.event_id())));
}

}  // namespace
}  // namespace imlog
