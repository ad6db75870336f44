#include "frame_layer.h"

namespace imlog::gw {

size_t text_frame_header(uint64_t size, std::array<unsigned char, 10>& out) {
  out[0] = 0x81;  // FIN, opcode 1 (text)
  if (size < 126) {
    out[1] = static_cast<unsigned char>(size);
    return 2;
  }
  if (size <= 0xffff) {
    out[1] = 126;
    out[2] = static_cast<unsigned char>(size >> 8);
    out[3] = static_cast<unsigned char>(size);
    return 4;
  }
  out[1] = 127;
  for (int k = 0; k < 8; ++k) out[2 + k] = static_cast<unsigned char>(size >> (8 * (7 - k)));
  return 10;
}

}  // namespace imlog::gw
