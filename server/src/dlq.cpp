#include "dlq.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <map>
#include <tuple>

#include <fmt/format.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "imlog/engine/streams.h"
#include "imlog/schema/codec.h"
#include "imlog/tasks/task_records.h"
#include "node.h"

namespace imlog {
namespace {

struct Letter {
  int32_t partition = 0;
  int64_t offset = 0;
  std::string key;
  std::string value;
};

// Every record of im.dlq, from each partition's first to its end at the time of the call, in
// (partition, offset) order.
Result<std::vector<Letter>> read_letters(EventLog& log) {
  const std::string topic(kDeadLetterTopic);
  auto parts = log.partition_count(topic);
  IMLOG_TRY(parts);
  std::vector<TopicPartitionOffset> from;
  std::map<int32_t, int64_t> end;
  for (int32_t p = 0; p < *parts; ++p) {
    auto b = log.begin_offset(TopicPartition{topic, p});
    IMLOG_TRY(b);
    auto e = log.end_offset(TopicPartition{topic, p});
    IMLOG_TRY(e);
    if (*e <= *b) continue;
    from.push_back(TopicPartitionOffset{topic, p, *b});
    end[p] = *e;
  }
  std::vector<Letter> letters;
  if (from.empty()) return letters;
  auto consumer = log.consumer(ConsumerOptions{});
  IMLOG_TRY(consumer->assign(from));
  std::vector<Record> batch;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!end.empty()) {
    if (std::chrono::steady_clock::now() > deadline) {
      return fail(LogErrc::timed_out, topic + " was not read to its end within 30 s");
    }
    IMLOG_TRY(consumer->poll(batch, std::chrono::milliseconds(500)));
    for (auto& r : batch) {
      auto it = end.find(r.partition);
      if (it == end.end() || r.offset >= it->second) continue;
      if (r.offset + 1 >= it->second) end.erase(it);
      letters.push_back(Letter{r.partition, r.offset, std::move(r.key), std::move(r.value)});
    }
  }
  consumer->close();
  std::sort(letters.begin(), letters.end(),
            [](const Letter& a, const Letter& b) { return std::tie(a.partition, a.offset) < std::tie(b.partition, b.offset); });
  return letters;
}

std::string utc(int64_t ms) {
  std::time_t secs = ms / 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

void list(const std::vector<Letter>& letters, std::ostream& out) {
  for (const auto& l : letters) {
    auto d = read_dead_letter(l.value);
    if (!d) {
      out << fmt::format("{}:{}  unreadable dead letter: {}\n", l.partition, l.offset, d.error().to_string());
      continue;
    }
    out << fmt::format("{}:{}  {}  {} {}:{}  attempts {}  trace_id={}  {}\n", l.partition, l.offset,
                       utc((*d)->failed_at_ms()), sv((*d)->source_topic()), (*d)->source_partition(),
                       (*d)->source_offset(), (*d)->attempts(), sv((*d)->trace_id()), sv((*d)->reason()));
  }
  out << fmt::format("{} dead letters in {}\n", letters.size(), kDeadLetterTopic);
}

std::string show_json(const Letter& l, const fb::DeadLetter& d) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  auto str = [&](const char* k, std::string_view v) {
    w.Key(k);
    w.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
  };
  w.StartObject();
  w.Key("partition");
  w.Int(l.partition);
  w.Key("offset");
  w.Int64(l.offset);
  str("key", l.key);
  str("reason", sv(d.reason()));
  str("trace_id", sv(d.trace_id()));
  str("source_topic", sv(d.source_topic()));
  w.Key("source_partition");
  w.Int(d.source_partition());
  w.Key("source_offset");
  w.Int64(d.source_offset());
  w.Key("attempts");
  w.Uint(d.attempts());
  w.Key("failed_at_ms");
  w.Int64(d.failed_at_ms());
  str("failed_at", utc(d.failed_at_ms()));
  std::string_view value = d.value() ? std::string_view(reinterpret_cast<const char*>(d.value()->data()), d.value()->size())
                                     : std::string_view();
  w.Key("value_bytes");
  w.Uint64(value.size());
  w.Key("task");
  if (auto task = read_task(value)) {
    w.StartObject();
    str("task_id", sv((*task)->task_id()));
    str("stream", sv((*task)->stream()));
    w.Key("seq");
    w.Uint64((*task)->seq());
    w.Key("page");
    w.Uint((*task)->page());
    w.Key("pages");
    w.Uint((*task)->pages());
    w.Key("recipients");
    w.StartArray();
    for (uint64_t u : *(*task)->recipients()) w.Uint64(u);
    w.EndArray();
    w.EndObject();
  } else {
    w.Null();  // a corrupt task: only its bytes, which `value_bytes` counts
  }
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize());
}

// "P:O" → the letter there, or nullptr.
const Letter* find(const std::vector<Letter>& letters, const std::string& which) {
  int32_t p = 0;
  int64_t o = 0;
  char colon = 0;
  if (std::sscanf(which.c_str(), "%d%c%ld", &p, &colon, &o) != 3 || colon != ':') return nullptr;
  for (const auto& l : letters) {
    if (l.partition == p && l.offset == o) return &l;
  }
  return nullptr;
}

int replay(EventLog& log, const std::vector<const Letter*>& chosen, std::ostream& out, std::ostream& err) {
  for (const Letter* l : chosen) {
    auto d = read_dead_letter(l->value);
    if (!d || !(*d)->value() || !(*d)->source_topic()) {
      err << fmt::format("imlog dlq: {}:{} is not a dead letter with its original record; not replayed\n", l->partition,
                         l->offset);
      return 1;
    }
    std::string topic(sv((*d)->source_topic()));
    // Only fan-out tasks are driven again this way: a push notification's dead letter names the
    // message it came from in im.events, and its value is the notification, never an event.
    if (topic != kTasksTopic) {
      err << fmt::format("imlog dlq: {}:{} came from {}, not {}; only fan-out tasks are replayed\n", l->partition,
                         l->offset, topic, kTasksTopic);
      return 1;
    }
    std::string value(reinterpret_cast<const char*>((*d)->value()->data()), (*d)->value()->size());
    auto r = log.append_wait(topic, {OutRecord{l->key, std::move(value), kByKey}});
    if (!r) {
      err << fmt::format("imlog dlq: replaying {}:{} to {} failed: {}\n", l->partition, l->offset, topic,
                         r.error().to_string());
      return 1;
    }
    out << fmt::format("replayed {}:{} to {} partition {} offset {} trace_id={}\n", l->partition, l->offset, topic,
                       r->front().partition, r->front().offset, sv((*d)->trace_id()));
  }
  return 0;
}

}  // namespace

int run_dlq(const ServerConfig& config, const DlqCommand& command, std::ostream& out, std::ostream& err) {
  auto log = open_event_log(config.event_log);
  if (!log) {
    err << "imlog dlq: " << log.error().to_string() << "\n";
    return 1;
  }
  auto letters = read_letters(**log);
  if (!letters) {
    err << "imlog dlq: reading " << kDeadLetterTopic << ": " << letters.error().to_string() << "\n";
    return 1;
  }
  if (command.action == "list") {
    list(*letters, out);
    return 0;
  }
  std::vector<const Letter*> chosen;
  if (command.action == "replay" && command.which == "all") {
    for (const auto& l : *letters) chosen.push_back(&l);
  } else if (const Letter* l = find(*letters, command.which)) {
    chosen.push_back(l);
  } else {
    err << "imlog dlq: no dead letter at `" << command.which << "` in " << kDeadLetterTopic
        << " (give PARTITION:OFFSET as `imlog dlq list` prints it)\n";
    return 1;
  }
  if (command.action == "show") {
    auto d = read_dead_letter(chosen.front()->value);
    if (!d) {
      err << "imlog dlq: " << command.which << ": " << d.error().to_string() << "\n";
      return 1;
    }
    out << show_json(*chosen.front(), **d) << "\n";
    return 0;
  }
  return replay(**log, chosen, out, err);
}

}  // namespace imlog
