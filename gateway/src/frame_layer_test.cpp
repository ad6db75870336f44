#include "frame_layer.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace imlog::gw {
namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using Payloads = std::vector<std::shared_ptr<const std::string>>;

// A loopback connection: the server's end in a FrameLayer past the handshake, the client's end a
// plain socket on its own io_context (read synchronously).
struct Pair {
  net::io_context server_ioc;
  net::io_context client_ioc;
  std::optional<FrameLayer<tcp::socket>> server;
  tcp::socket client{client_ioc};

  // Socket buffers of about `buffer_bytes` (the kernel caps them at net.core.[rw]mem_max): small
  // ones make a large write more than the socket takes at once.
  explicit Pair(int buffer_bytes = 1 << 20) {
    tcp::acceptor acceptor(server_ioc, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
    client.open(tcp::v4());
    client.set_option(net::socket_base::receive_buffer_size(buffer_bytes));
    client.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), acceptor.local_endpoint().port()));
    tcp::socket accepted(server_ioc);
    acceptor.accept(accepted);
    accepted.set_option(net::socket_base::send_buffer_size(buffer_bytes));
    server.emplace(std::move(accepted));
    server->handshake_done();
  }

  std::string read_exactly(size_t n) {
    std::string got(n, '\0');
    net::read(client, net::buffer(got));
    return got;
  }
};

Payloads payloads(std::initializer_list<std::string> texts) {
  Payloads out;
  for (const auto& t : texts) out.push_back(std::make_shared<const std::string>(t));
  return out;
}

// What the client must receive: each payload as an unmasked final frame.
std::string framed(const Payloads& ps, bool binary) {
  std::string out;
  for (const auto& p : ps) {
    std::array<unsigned char, 10> h{};
    size_t n = data_frame_header(binary, p->size(), h);
    out.append(reinterpret_cast<const char*>(h.data()), n);
    out += *p;
  }
  return out;
}

TEST(FrameLayer, AWriteTheSocketTakesCompletesAtOnceWithoutItsHandler) {
  Pair pair;
  auto frames = payloads({R"({"type":"ack"})", std::string(300, 'p'), std::string(70000, 'q')});
  bool called = false;
  std::string want = framed(frames, false), got;
  std::thread reader([&] { got = pair.read_exactly(want.size()); });  // reads even if the write did not go at once
  bool at_once = pair.server->write_frames(frames, false, [&](boost::beast::error_code, std::size_t) { called = true; });
  pair.server_ioc.run();
  reader.join();
  EXPECT_TRUE(at_once) << "about 70 KB into socket buffers of about 1 MiB";
  EXPECT_EQ(got, want);
  EXPECT_NE(called, at_once) << "a write done at once has no completion; one that was not, has";
}

TEST(FrameLayer, MoreFramesThanOneSyscallTakesStillGoAtOnce) {
  // 100 frames are 200 buffers; one write_some passes at most 64 (Asio's limit).
  Pair pair;
  Payloads frames;
  for (int i = 0; i < 100; ++i) frames.push_back(std::make_shared<const std::string>("frame " + std::to_string(i)));
  std::string want = framed(frames, true), got;
  std::thread reader([&] { got = pair.read_exactly(want.size()); });
  bool at_once = pair.server->write_frames(frames, true, [](boost::beast::error_code, std::size_t) {});
  pair.server_ioc.run();
  reader.join();
  EXPECT_TRUE(at_once);
  EXPECT_EQ(got, want);
}

TEST(FrameLayer, WhatTheSocketDoesNotTakeIsWrittenInTheBackgroundInOrder) {
  Pair pair(4096);
  auto frames = payloads({"first", std::string(4 << 20, 'x'), "last"});
  for (bool binary : {false, true}) {
    std::optional<boost::beast::error_code> result;
    size_t bytes = 0;
    std::string want = framed(frames, binary);
    EXPECT_FALSE(pair.server->write_frames(frames, binary, [&](boost::beast::error_code ec, std::size_t n) {
      result = ec;
      bytes = n;
    })) << "4 MiB through a 4 KiB socket buffer cannot go at once";
    std::string got;
    std::thread reader([&] { got = pair.read_exactly(want.size()); });
    pair.server_ioc.restart();
    pair.server_ioc.run();  // until the background write completes
    reader.join();
    ASSERT_TRUE(result.has_value());
    EXPECT_FALSE(*result) << result->message();
    EXPECT_EQ(bytes, want.size()) << "the handler counts the whole write, the first try's bytes included";
    EXPECT_TRUE(got == want) << "the bytes arrive whole and in order (binary=" << binary << ")";
  }
}

TEST(FrameLayer, AWriteToAResetConnectionReportsItsErrorToTheHandler) {
  Pair pair;
  pair.client.set_option(net::socket_base::linger(true, 0));
  pair.client.close();  // a reset: the server's next send fails
  std::optional<boost::beast::error_code> result;
  auto frames = payloads({"to nobody"});
  bool at_once = true;
  // The reset may land after a first send that the kernel still took: write until one fails.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (at_once && std::chrono::steady_clock::now() < deadline) {
    at_once = pair.server->write_frames(frames, false, [&](boost::beast::error_code ec, std::size_t) { result = ec; });
    if (at_once) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_FALSE(at_once) << "a reset connection takes no write";
  pair.server_ioc.run();
  ASSERT_TRUE(result.has_value());
  EXPECT_TRUE(*result) << "the handler gets the socket's error";
}

}  // namespace
}  // namespace imlog::gw
