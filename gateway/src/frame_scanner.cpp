#include "frame_scanner.h"

#include <algorithm>

namespace imlog::gw {

void FrameScanner::scan(unsigned char* data, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (payload_left_ > 0) {
      uint64_t skip = std::min<uint64_t>(payload_left_, n - i);
      i += skip;
      payload_left_ -= skip;
      if (payload_left_ == 0) frame_done(scanned_ + i);
      continue;
    }
    if (header_len_ == 0) {
      unsigned char opcode = data[i] & 0x0f;
      if (opcode == 0x1) {
        data[i] = static_cast<unsigned char>((data[i] & 0xf0) | 0x2);
        messages_.push_back({true});
      } else if (opcode == 0x2) {
        messages_.push_back({false});
      }
      header_need_ = 2;
    }
    header_[header_len_++] = data[i++];
    if (header_len_ == 2) {
      unsigned len7 = header_[1] & 0x7f;
      header_need_ = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + ((header_[1] & 0x80) ? 4 : 0);
    }
    if (header_len_ >= 2 && header_len_ == header_need_) {
      unsigned len7 = header_[1] & 0x7f;
      uint64_t len = len7;
      if (len7 == 126) {
        len = (uint64_t{header_[2]} << 8) | header_[3];
      } else if (len7 == 127) {
        len = 0;
        for (int k = 0; k < 8; ++k) len = (len << 8) | header_[2 + k];
      }
      payload_left_ = len;
      header_len_ = 0;
      unsigned opcode = header_[0] & 0x0f;
      ends_message_ = (header_[0] & 0x80) != 0 && opcode <= 0x2;  // the final frame of a data message
      if (len == 0) frame_done(scanned_ + i);
    }
  }
  scanned_ += n;
}

void FrameScanner::frame_done(uint64_t end) {
  if (!ends_message_) return;
  ends_message_ = false;
  // A final continuation with no message open (a protocol error Beast fails) ends nothing.
  if (!messages_.empty() && messages_.back().end == 0) messages_.back().end = end;
}

void FrameScanner::forget_marks_before(uint64_t end) {
  while (!marks_.empty() && marks_.front().through < end) marks_.pop_front();
}

void FrameScanner::arrived(uint64_t more, Clock::time_point at) {
  // Marks short of the oldest message's end say nothing any message will need.
  forget_marks_before(messages_.empty() ? scanned_ + 1 : end_of(messages_.front()));
  uint64_t through = scanned_ + more;
  if (!marks_.empty() && marks_.back().through >= through) return;  // an earlier mark says as much
  if (marks_.size() >= kMaxMarks) marks_.pop_back();  // its bytes fall to the new, later mark
  marks_.push_back({through, at});
}

std::optional<FrameScanner::Message> FrameScanner::take_message() {
  if (messages_.empty()) return std::nullopt;
  Started m = messages_.front();
  messages_.pop_front();
  // A message had arrived once its last byte had: the first mark that reaches its end.
  forget_marks_before(end_of(m));
  Message out{m.text, std::nullopt};
  if (!marks_.empty()) out.arrived = marks_.front().at;
  return out;
}

}  // namespace imlog::gw
