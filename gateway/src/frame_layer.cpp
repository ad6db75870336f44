#include "frame_layer.h"

namespace imlog::gw {

size_t data_frame_header(bool binary, uint64_t size, std::array<unsigned char, 10>& out) {
  out[0] = binary ? 0x82 : 0x81;  // FIN, opcode 2 (binary) or 1 (text)
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
