#pragma once
// Follows the WebSocket framing (RFC 6455 §5.2) of the bytes a client sends, and turns every text
// data frame into a binary one in place, remembering which messages were text.
//
// Why: Beast validates UTF-8 in text frames itself and fails the connection (1007) on the first bad
// byte, before the session sees anything. The protocol promises a client an `error` frame
// (`invalid_utf8`) and a connection that survives, so the gateway validates UTF-8 itself: Beast
// sees only binary frames, and the session asks the scanner what each message really was.
//
//   byte 0: FIN RSV1-3 opcode(4)   ← 0x1 (text) rewritten to 0x2 (binary)
//   byte 1: MASK len7              len7 = 126: 16-bit length follows; 127: 64-bit
//   [ext length] [mask key(4)] payload(len)
//
// Thread-compatible: owned by one connection, used on its strand.

#include <cstddef>
#include <cstdint>
#include <deque>

namespace imlog::gw {

class FrameScanner {
 public:
  // Scans the next `n` bytes read from the peer (in stream order); rewrites text opcodes.
  void scan(unsigned char* data, size_t n);
  // The kind of the oldest data message not yet taken: true for text. False when none is known.
  bool take_message_kind(bool& was_text);
  [[nodiscard]] size_t pending_messages() const { return kinds_.size(); }

 private:
  unsigned char header_[14] = {};
  size_t header_len_ = 0;
  size_t header_need_ = 2;
  uint64_t payload_left_ = 0;
  std::deque<bool> kinds_;  // one per data message started (text / binary), oldest first
};

}  // namespace imlog::gw
