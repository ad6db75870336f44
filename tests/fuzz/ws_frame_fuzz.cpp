// What the gateway does with a client's WebSocket bytes.
//
// 1. The frame scanner over the input as raw stream bytes, once in one read and once in reads of
//    1..16 bytes: both must rewrite the same bytes, see the same message kinds, and date each
//    complete message by the read that brought its last byte.
// 2. The input as one complete text message (decode_client_frame): a request whose fields keep
//    the protocol's limits, or an error whose frame is valid UTF-8 JSON.
// 3. The input as one complete binary message of imlog.v1 (decode_binary_client_frame: verify,
//    turn into JSON, decode): the same promises. The seeds in the corpus that are FlatBuffers
//    (*.fb, made with `flatc --binary docs/api/websocket.fbs seed.json`) start it at real frames.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "check.h"
#include "client_frames.h"
#include "frame_scanner.h"
#include "json.h"

namespace {

using namespace imlog::gw;
using imlog::valid_utf8;

constexpr size_t kMaxContent = 64 * 1024;

void scan(const uint8_t* data, size_t size) {
  using Clock = FrameScanner::Clock;
  const Clock::time_point t0{};
  std::vector<unsigned char> whole(data, data + size), pieces = whole;
  FrameScanner one, many;
  one.scan(whole.data(), whole.size());
  one.arrived(0, t0 + std::chrono::seconds(1));
  int reads = 0;
  for (size_t i = 0; i < size;) {
    size_t n = std::min<size_t>(1 + data[i] % 16, size - i);
    many.scan(pieces.data() + i, n);
    many.arrived(0, t0 + std::chrono::seconds(++reads));  // a read a second
    i += n;
  }
  IMLOG_FUZZ_CHECK(whole == pieces);
  IMLOG_FUZZ_CHECK(one.pending_messages() == many.pending_messages());
  // The same messages, of the same kinds. A message has an arrival in both or in neither (it is
  // complete or not); in one read, it is that read's; in many, no later than the last read, and no
  // earlier than the message before it.
  Clock::time_point last{};
  while (auto a = one.take_message()) {
    auto b = many.take_message();
    IMLOG_FUZZ_CHECK(b.has_value());
    IMLOG_FUZZ_CHECK(a->text == b->text);
    IMLOG_FUZZ_CHECK(a->arrived.has_value() == b->arrived.has_value());
    if (!a->arrived) continue;
    IMLOG_FUZZ_CHECK(*a->arrived == t0 + std::chrono::seconds(1));
    IMLOG_FUZZ_CHECK(*b->arrived >= last && *b->arrived <= t0 + std::chrono::seconds(reads));
    last = *b->arrived;
  }
  IMLOG_FUZZ_CHECK(!many.take_message());
}

void check_error_frame(const FrameError& e) {
  IMLOG_FUZZ_CHECK(!e.code.empty());
  JsonOut j;
  j.begin_object().field("type", "error").key("data").begin_object();
  j.field("code", e.code).field("message", e.message);
  j.field("client_msg_id", e.client_msg_id).field("request_type", e.request_type);
  j.end_object().end_object();
  std::string out = j.take();
  IMLOG_FUZZ_CHECK(valid_utf8(out));
  rapidjson::Document doc;
  JsonError error;
  IMLOG_FUZZ_CHECK(parse_client_json(out, doc, error));
}

void check(const ClientFrame& frame) {
  std::string why;
  if (auto* e = std::get_if<FrameError>(&frame)) return check_error_frame(*e);
  if (auto* m = std::get_if<SendMessageFrame>(&frame)) {
    IMLOG_FUZZ_CHECK(!m->client_msg_id.empty() && m->client_msg_id.size() <= 128);
    IMLOG_FUZZ_CHECK(m->content.size() <= kMaxContent && valid_utf8(m->content));
    IMLOG_FUZZ_CHECK(check_conversation(m->conversation, why));
  } else if (auto* s = std::get_if<SyncFrame>(&frame)) {
    IMLOG_FUZZ_CHECK(s->limit >= 1 && s->limit <= 200);
    IMLOG_FUZZ_CHECK(check_conversation(s->conversation, why));
  } else if (auto* r = std::get_if<ReadFrame>(&frame)) {
    IMLOG_FUZZ_CHECK(check_conversation(r->conversation, why));
  } else if (auto* st = std::get_if<SetStatusFrame>(&frame)) {
    IMLOG_FUZZ_CHECK(st->status.size() <= 32 && valid_utf8(st->status));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  scan(data, size);
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  check(decode_client_frame(bytes, kMaxContent));
  check(decode_binary_client_frame(bytes, kMaxContent));
  return 0;
}
