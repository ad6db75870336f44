// A record read from the log, as bytes that may be corrupt: the FlatBuffers verifier (read_event,
// read_command, read_delivery, read_task) must refuse what it cannot vouch for; what it accepts must unpack
// into the object API, encode again to an event that verifies, and apply to a stream's state (the
// sequencer's catch-up), whose state-store encoding must decode back to the same state. A
// message's sealed text is opened with a fixed key (forged bytes must fail `corrupt`, never crash),
// and a text sealed with that key must open to itself. A sealed profile (schema 10) opens the
// same way, and the input sealed as a profile's plaintext (bytes that are not a SealedProfile, yet
// authentic) must open or fail `corrupt`, never crash. The bytes
// are also read as a state-store value (decode_state), which the engine reads from disk on start.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "check.h"
#include "imlog/engine/data_keys.h"
#include "imlog/engine/stream_state.h"
#include "imlog/engine/streams.h"
#include "imlog/schema/codec.h"
#include "imlog/tasks/task_records.h"

namespace {

using namespace imlog;

// A key store of one fixed key, for every user.
class FixedKeys final : public KeyStore {
 public:
  FixedKeys() { key_.fill(0x5a); }
  Result<DataKey> key_for_writing(uint64_t) override { return key_; }
  Result<std::optional<DataKey>> key_for_reading(uint64_t) override { return std::optional<DataKey>(key_); }
  Status destroy(uint64_t) override { return {}; }
  DataKey key_;
};

void sealed_text(const fb::EventEnvelope& e) {
  const auto* m = e.event_as_MessageAppended();
  if (m == nullptr) return;
  FixedKeys keys;
  auto text = message_text(e, *m, keys);
  if (m->sealed_content() != nullptr) {
    IMLOG_FUZZ_CHECK(text.has_value() || text.error().code() == make_error_code(KeyErrc::corrupt));
  }
  std::string plain(sv(m->content()));
  auto opened = unseal(keys.key_, seal(keys.key_, plain, {e.event_id(), "content"}), {e.event_id(), "content"});
  IMLOG_FUZZ_CHECK(opened.has_value() && *opened == plain);
}

bool opens_or_is_corrupt(const Result<std::optional<std::string>>& opened) {
  if (!opened) return opened.error().code() == make_error_code(KeyErrc::corrupt);
  return !opened->has_value() || read_event(**opened).has_value();
}

void sealed_profile(const fb::EventEnvelope& e) {
  FixedKeys keys;
  IMLOG_FUZZ_CHECK(opens_or_is_corrupt(open_profile(e, keys)));
}

// `plaintext` as the sealed profile of a registration: authentic bytes that need not decode.
void forged_profile(std::string_view plaintext) {
  FixedKeys keys;
  fb::EventEnvelopeT e;
  e.event_id = 7;
  e.stream = "names_1";
  fb::UserRegisteredT reg;
  reg.user_id = 1;
  reg.username = "someone";
  std::string sealed = seal(keys.key_, plaintext, {e.event_id, "profile"});
  reg.sealed_profile.assign(sealed.begin(), sealed.end());
  e.event.Set(std::move(reg));
  const std::string bytes = encode_event(e);
  auto ev = read_event(bytes);
  IMLOG_FUZZ_CHECK(ev.has_value());
  IMLOG_FUZZ_CHECK(opens_or_is_corrupt(open_profile(**ev, keys)));
}

void event(std::string_view bytes) {
  auto ev = read_event(bytes);
  if (!ev) return;
  sealed_text(**ev);
  sealed_profile(**ev);
  fb::EventEnvelopeT unpacked;
  (*ev)->UnPackTo(&unpacked);
  IMLOG_FUZZ_CHECK(read_event(encode_event(unpacked)).has_value());
  auto stream = parse_stream(sv((*ev)->stream()));
  if (!stream) return;
  StreamState state;
  (void)recall_entry_of(**ev);
  apply(*stream, state, **ev);
  apply(*stream, state, **ev);
  StreamState again;
  IMLOG_FUZZ_CHECK(decode_state(encode_state(state), again));
  IMLOG_FUZZ_CHECK(again == state);
}

void others(std::string_view bytes) {
  if (auto c = read_command(bytes)) {
    fb::CommandEnvelopeT unpacked;
    (*c)->UnPackTo(&unpacked);
    IMLOG_FUZZ_CHECK(read_command(encode_command(unpacked)).has_value());
  }
  if (auto d = read_delivery(bytes)) {
    fb::DeliveryT unpacked;
    (*d)->UnPackTo(&unpacked);
  }
  if (auto t = read_task(bytes)) {
    fb::FanoutTaskT unpacked;
    (*t)->UnPackTo(&unpacked);
  }
  StreamState state;
  if (decode_state(bytes, state)) {
    StreamState again;
    IMLOG_FUZZ_CHECK(decode_state(encode_state(state), again) && again == state);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  event(bytes);
  others(bytes);
  forged_profile(bytes);
  return 0;
}
