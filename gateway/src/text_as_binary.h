#pragma once
// A stream layer between beast::tcp_stream and websocket::stream that runs every byte read through
// a FrameScanner (frame_scanner.h says why). Writes pass through untouched. Used only by
// ws_session.cpp.
//
// Threading: like the stream it wraps (one strand).

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/websocket/teardown.hpp>

#include "frame_scanner.h"

namespace imlog::gw {

template <class Next>
class TextAsBinary {
 public:
  using executor_type = typename Next::executor_type;
  using next_layer_type = Next;

  template <class... Args>
  explicit TextAsBinary(Args&&... args) : next_(std::forward<Args>(args)...) {}

  executor_type get_executor() noexcept { return next_.get_executor(); }
  Next& next_layer() noexcept { return next_; }
  const Next& next_layer() const noexcept { return next_; }
  FrameScanner& scanner() noexcept { return scanner_; }

  template <class MutableBuffers, class Handler>
  auto async_read_some(const MutableBuffers& buffers, Handler&& handler) {
    return boost::asio::async_initiate<Handler, void(boost::beast::error_code, std::size_t)>(
        [this](auto&& h, const MutableBuffers& b) {
          auto ex = boost::asio::get_associated_executor(h, next_.get_executor());
          next_.async_read_some(
              b, boost::asio::bind_executor(ex, [this, b, h = std::move(h)](boost::beast::error_code ec,
                                                                              std::size_t n) mutable {
                scan(b, n);
                std::move(h)(ec, n);
              }));
        },
        handler, buffers);
  }

  template <class ConstBuffers, class Handler>
  auto async_write_some(const ConstBuffers& buffers, Handler&& handler) {
    return next_.async_write_some(buffers, std::forward<Handler>(handler));
  }

  template <class MutableBuffers>
  std::size_t read_some(const MutableBuffers& buffers, boost::beast::error_code& ec) {
    std::size_t n = next_.read_some(buffers, ec);
    scan(buffers, n);
    return n;
  }
  template <class MutableBuffers>
  std::size_t read_some(const MutableBuffers& buffers) {
    std::size_t n = next_.read_some(buffers);
    scan(buffers, n);
    return n;
  }
  template <class ConstBuffers>
  std::size_t write_some(const ConstBuffers& buffers, boost::beast::error_code& ec) {
    return next_.write_some(buffers, ec);
  }
  template <class ConstBuffers>
  std::size_t write_some(const ConstBuffers& buffers) {
    return next_.write_some(buffers);
  }

 private:
  template <class MutableBuffers>
  void scan(const MutableBuffers& buffers, std::size_t n) {
    for (auto it = boost::asio::buffer_sequence_begin(buffers); n > 0 && it != boost::asio::buffer_sequence_end(buffers);
         ++it) {
      boost::asio::mutable_buffer b = *it;
      std::size_t k = std::min(n, b.size());
      scanner_.scan(static_cast<unsigned char*>(b.data()), k);
      n -= k;
    }
  }

  Next next_;
  FrameScanner scanner_;
};

// The WebSocket close handshake tears down the layer below (found by ADL).
template <class Next>
void teardown(boost::beast::role_type role, TextAsBinary<Next>& s, boost::beast::error_code& ec) {
  using boost::beast::websocket::teardown;
  teardown(role, s.next_layer(), ec);
}

template <class Next, class Handler>
void async_teardown(boost::beast::role_type role, TextAsBinary<Next>& s, Handler&& handler) {
  using boost::beast::websocket::async_teardown;
  async_teardown(role, s.next_layer(), std::forward<Handler>(handler));
}

}  // namespace imlog::gw
