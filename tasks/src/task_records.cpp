#include "imlog/tasks/task_records.h"

#include "imlog/schema/codec.h"

namespace imlog {
namespace {

template <class T, class TObj>
std::string encode(const TObj& obj) {
  flatbuffers::FlatBufferBuilder fbb(256);
  fbb.Finish(T::Pack(fbb, &obj));
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

template <class T>
Result<const T*> verified(std::string_view bytes, const char* what) {
  auto data = reinterpret_cast<const uint8_t*>(bytes.data());
  flatbuffers::Verifier verifier(data, bytes.size());
  if (bytes.size() < 8 || !verifier.VerifyBuffer<T>(nullptr)) {
    return fail(SchemaErrc::malformed, std::string("not a valid ") + what + " (" + std::to_string(bytes.size()) + " bytes)");
  }
  return flatbuffers::GetRoot<T>(data);
}

}  // namespace

std::string encode_task(const fb::FanoutTaskT& task) { return encode<fb::FanoutTask>(task); }

Result<const fb::FanoutTask*> read_task(std::string_view bytes) {
  auto t = verified<fb::FanoutTask>(bytes, "fan-out task");
  IMLOG_TRY(t);
  const fb::FanoutTask& task = **t;
  if (!task.task_id() || task.task_id()->size() == 0) return fail(SchemaErrc::missing_field, "fan-out task without task_id");
  if (!task.recipients()) return fail(SchemaErrc::missing_field, "fan-out task " + task.task_id()->str() + " without recipients");
  if (!task.event() || !task.event_nested_root()) {
    return fail(SchemaErrc::missing_field, "fan-out task " + task.task_id()->str() + " without its event");
  }
  if (!aligned_ids(task.recipients(), bytes)) {
    return fail(SchemaErrc::malformed, "fan-out task " + task.task_id()->str() + ": recipients are misaligned");
  }
  // The nested event passed the verifier; it must also pass read_event's checks.
  auto event = read_event(std::string_view(reinterpret_cast<const char*>(task.event()->data()), task.event()->size()));
  if (!event) return fail(event.error().with_context("fan-out task " + task.task_id()->str()));
  return t;
}

std::string task_id(std::string_view stream, uint64_t seq, uint32_t page) {
  return std::string(stream) + "/" + std::to_string(seq) + "/" + std::to_string(page);
}

std::string task_key(std::string_view stream, uint32_t page) { return std::string(stream) + "/" + std::to_string(page); }

std::string trace_of(const fb::FanoutTask& task) {
  if (task.trace_id() != nullptr) return std::string(sv(task.trace_id()));
  // A task written before FanoutTask.trace_id: its event names it.
  if (const auto* e = task.event_nested_root(); e != nullptr) return std::string(sv(e->trace_id()));
  return {};
}

OutRecord dead_letter(const Record& source, std::string_view reason, uint32_t attempts, int64_t now_ms) {
  fb::DeadLetterT d;
  d.reason = std::string(reason);
  d.source_topic = source.topic;
  d.source_partition = source.partition;
  d.source_offset = source.offset;
  d.attempts = attempts;
  d.failed_at_ms = now_ms;
  d.value.assign(source.value.begin(), source.value.end());
  if (auto task = read_task(source.value)) d.trace_id = trace_of(**task);
  return OutRecord{source.key, encode<fb::DeadLetter>(d), kByKey};
}

Result<const fb::DeadLetter*> read_dead_letter(std::string_view bytes) {
  return verified<fb::DeadLetter>(bytes, "dead letter");
}

}  // namespace imlog
