// A record read from the log, as bytes that may be corrupt: the FlatBuffers verifier (read_event,
// read_command, read_delivery, read_task) must refuse what it cannot vouch for; what it accepts must unpack
// into the object API, encode again to an event that verifies, and apply to a stream's state (the
// sequencer's catch-up), whose state-store encoding must decode back to the same state. The bytes
// are also read as a state-store value (decode_state), which the engine reads from disk on start.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "check.h"
#include "imlog/engine/stream_state.h"
#include "imlog/engine/streams.h"
#include "imlog/schema/codec.h"
#include "imlog/tasks/task_records.h"

namespace {

using namespace imlog;

void event(std::string_view bytes) {
  auto ev = read_event(bytes);
  if (!ev) return;
  fb::EventEnvelopeT unpacked;
  (*ev)->UnPackTo(&unpacked);
  IMLOG_FUZZ_CHECK(read_event(encode_event(unpacked)).has_value());
  auto stream = parse_stream(sv((*ev)->stream()));
  if (!stream) return;
  StreamState state;
  EngineLimits limits;
  apply(*stream, state, **ev, limits);
  apply(*stream, state, **ev, limits);
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
  return 0;
}
