#include "imlog/schema/codec.h"

namespace imlog {
namespace {

class SchemaCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "schema"; }
  std::string message(int c) const override {
    switch (static_cast<SchemaErrc>(c)) {
      case SchemaErrc::malformed: return "malformed record";
      case SchemaErrc::unknown_type: return "unknown record type";
      case SchemaErrc::missing_field: return "missing field";
    }
    return "unknown schema error";
  }
};

template <class T>
Result<const T*> verified(std::string_view bytes, const char* what) {
  auto data = reinterpret_cast<const uint8_t*>(bytes.data());
  flatbuffers::Verifier verifier(data, bytes.size());
  if (!verifier.VerifyBuffer<T>(nullptr)) {
    return fail(SchemaErrc::malformed, std::string("not a valid ") + what + " (" +
                                           std::to_string(bytes.size()) + " bytes)");
  }
  return flatbuffers::GetRoot<T>(data);
}

}  // namespace

bool aligned_ids(const flatbuffers::Vector<uint64_t>* ids, std::string_view buffer) {
  if (ids == nullptr) return true;
  auto offset = reinterpret_cast<const char*>(ids->data()) - buffer.data();
  return offset % static_cast<std::ptrdiff_t>(alignof(uint64_t)) == 0;
}

const std::error_category& schema_category() {
  static const SchemaCategory category;
  return category;
}

Result<const fb::EventEnvelope*> read_event(std::string_view bytes) {
  auto e = verified<fb::EventEnvelope>(bytes, "event envelope");
  if (!e) return e;
  auto type = (*e)->event_type();
  if (type == fb::Event::NONE || type > fb::Event::MAX) {
    return fail(SchemaErrc::unknown_type,
                "event type " + std::to_string(static_cast<int>(type)) +
                    " is unknown to this build (schema version " +
                    std::to_string((*e)->schema_version()) + ")");
  }
  // The verifier accepts a union type whose table is absent; every reader expects the table.
  if ((*e)->event() == nullptr) {
    return fail(SchemaErrc::missing_field, "event " + std::string(event_type_name(type)) + " has no body");
  }
  if (auto* g = (*e)->event_as_GroupCreated(); g && !aligned_ids(g->members(), bytes)) {
    return fail(SchemaErrc::malformed, "GroupCreated members are misaligned");
  }
  return e;
}

Result<const fb::CommandEnvelope*> read_command(std::string_view bytes) {
  auto c = verified<fb::CommandEnvelope>(bytes, "command envelope");
  if (!c) return c;
  auto type = (*c)->command_type();
  if (type == fb::Command::NONE || type > fb::Command::MAX) {
    return fail(SchemaErrc::unknown_type, "command type " + std::to_string(static_cast<int>(type)) +
                                              " is unknown to this build");
  }
  if ((*c)->command() == nullptr) {
    return fail(SchemaErrc::missing_field, "command " + std::string(command_type_name(type)) + " has no body");
  }
  if (auto* g = (*c)->command_as_CreateGroup(); g && !aligned_ids(g->members(), bytes)) {
    return fail(SchemaErrc::malformed, "CreateGroup members are misaligned");
  }
  return c;
}

Result<const fb::Delivery*> read_delivery(std::string_view bytes) {
  auto d = verified<fb::Delivery>(bytes, "delivery");
  if (!d) return d;
  if (!aligned_ids((*d)->recipients(), bytes)) return fail(SchemaErrc::malformed, "delivery recipients are misaligned");
  if ((*d)->event() == nullptr) return d;
  // The nested event passed the verifier; it must also pass read_event's checks.
  auto nested = read_event(std::string_view(reinterpret_cast<const char*>((*d)->event()->data()), (*d)->event()->size()));
  if (!nested) return fail(nested.error().with_context("the delivery's event"));
  return d;
}

namespace {

// One builder per thread, cleared and reused: its buffer is allocated once instead of per record
// (the hot path encodes a command, an event and a delivery per message).
template <class T, class TObj>
std::string encode(const TObj& obj) {
  thread_local flatbuffers::FlatBufferBuilder fbb(1024);
  fbb.Clear();
  fbb.Finish(T::Pack(fbb, &obj));
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

}  // namespace

std::string encode_event(const fb::EventEnvelopeT& event) {
  if (event.schema_version == kSchemaVersion) return encode<fb::EventEnvelope>(event);
  fb::EventEnvelopeT copy = event;
  copy.schema_version = kSchemaVersion;
  return encode<fb::EventEnvelope>(copy);
}

std::string encode_command(const fb::CommandEnvelopeT& command) {
  if (command.schema_version == kSchemaVersion) return encode<fb::CommandEnvelope>(command);
  fb::CommandEnvelopeT copy = command;
  copy.schema_version = kSchemaVersion;
  return encode<fb::CommandEnvelope>(copy);
}

std::string encode_delivery(const fb::DeliveryT& delivery) {
  return encode<fb::Delivery>(delivery);
}

std::string_view event_type_name(fb::Event type) { return fb::EnumNameEvent(type); }
std::string_view command_type_name(fb::Command type) { return fb::EnumNameCommand(type); }

std::string_view join_policy_name(fb::JoinPolicy policy) {
  switch (policy) {
    case fb::JoinPolicy::Private: return "private";
    case fb::JoinPolicy::Public: return "public";
  }
  return "";
}

std::string_view history_rule_name(fb::HistoryRule rule) {
  switch (rule) {
    case fb::HistoryRule::All: return "all";
    case fb::HistoryRule::FromJoin: return "from_join";
  }
  return "";
}

bool parse_join_policy(std::string_view name, fb::JoinPolicy& out) {
  for (auto p : {fb::JoinPolicy::Private, fb::JoinPolicy::Public}) {
    if (name == join_policy_name(p)) {
      out = p;
      return true;
    }
  }
  return false;
}

bool parse_history_rule(std::string_view name, fb::HistoryRule& out) {
  for (auto r : {fb::HistoryRule::All, fb::HistoryRule::FromJoin}) {
    if (name == history_rule_name(r)) {
      out = r;
      return true;
    }
  }
  return false;
}

std::string_view push_platform_name(fb::PushPlatform platform) {
  switch (platform) {
    case fb::PushPlatform::Apns: return "apns";
    case fb::PushPlatform::Fcm: return "fcm";
    case fb::PushPlatform::Webhook: return "webhook";
  }
  return "";
}

bool parse_push_platform(std::string_view name, fb::PushPlatform& out) {
  for (auto p : {fb::PushPlatform::Apns, fb::PushPlatform::Fcm, fb::PushPlatform::Webhook}) {
    if (name == push_platform_name(p)) {
      out = p;
      return true;
    }
  }
  return false;
}

}  // namespace imlog
