#pragma once
// Follows the WebSocket framing (RFC 6455 §5.2) of the bytes a client sends, and turns every text
// data frame into a binary one in place, remembering which messages were text and by when each
// had arrived.
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
// Arrival: a message waits, unread, in the kernel's socket buffer and then in Beast's read buffer
// while the gateway's I/O threads are behind. After each socket read the layer below calls
// arrived(): the bytes scanned so far, and the bytes the kernel still held when the read filled its
// buffer (FIONREAD), had all arrived by then. A message had arrived by the first such mark that
// reaches its last byte, so `now - arrived` is a lower bound on how long the complete message
// waited — never the time the client took to send it — exact to within one read, and short by at
// most the I/O thread's queue delay (the mark is taken when the read's handler runs).
//
// Thread-compatible: owned by one connection, used on its strand.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>

namespace imlog::gw {

class FrameScanner {
 public:
  using Clock = std::chrono::steady_clock;

  struct Message {
    bool text = false;                        // sent as a text message (Beast saw binary)
    std::optional<Clock::time_point> arrived;  // by when it had arrived; none: no mark covers it
  };

  // Scans the next `n` bytes read from the peer (in stream order); rewrites text opcodes.
  void scan(unsigned char* data, size_t n);
  // After a socket read: every byte scanned so far, and `more` bytes after them (still in the
  // kernel), had arrived by `at`. Calls come in time order.
  void arrived(uint64_t more, Clock::time_point at);
  // The oldest data message not yet taken; none when none has started.
  std::optional<Message> take_message();
  [[nodiscard]] size_t pending_messages() const { return messages_.size(); }

 private:
  struct Started {
    bool text;
    uint64_t end = 0;  // stream offset just past its last byte; 0 while its final frame is coming
  };
  struct Mark {
    uint64_t through;  // the stream's first `through` bytes had arrived by `at`
    Clock::time_point at;
  };
  // Marks pile up only while a complete message waits to be taken; past this many, the newest
  // gives way to the next, whose later time only makes the messages it covered look younger.
  static constexpr size_t kMaxMarks = 256;

  // The current frame's payload ended at stream offset `end`.
  void frame_done(uint64_t end);
  void forget_marks_before(uint64_t end);
  // Where a message ends, as far as is known: a message still arriving ends after every byte so far.
  [[nodiscard]] uint64_t end_of(const Started& m) const { return m.end != 0 ? m.end : scanned_ + 1; }

  unsigned char header_[14] = {};
  size_t header_len_ = 0;
  size_t header_need_ = 2;
  uint64_t payload_left_ = 0;
  bool ends_message_ = false;     // the current frame is the final frame of a data message
  uint64_t scanned_ = 0;          // bytes scanned since the connection opened
  std::deque<Started> messages_;  // one per data message started, oldest first
  std::deque<Mark> marks_;        // `through` ascending
};

}  // namespace imlog::gw
