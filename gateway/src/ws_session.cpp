#include "ws_session.h"

#include <algorithm>
#include <atomic>
#include <functional>
#include <unordered_set>
#include <vector>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "imlog/core/logging.h"
#include "imlog/gateway/command_bus.h"
#include "imlog/gateway/ws_binary.h"
#include "imlog/tasks/sessions.h"
#include "presence.h"
#include "frame_layer.h"
#include "ws_frames.h"
#include "ws_protocol.h"

namespace imlog::gw {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;

// A token bucket: `rate` tokens per second up to `burst`. On the session's strand.
class TokenBucket {
 public:
  TokenBucket(double rate, double burst) : rate_(rate), burst_(burst), tokens_(burst) {}
  bool take() {
    auto now = std::chrono::steady_clock::now();
    double elapsed = std::chrono::duration<double>(now - last_).count();
    last_ = now;
    tokens_ = std::min(burst_, tokens_ + elapsed * rate_);
    if (tokens_ < 1.0) return false;
    tokens_ -= 1.0;
    return true;
  }

 private:
  double rate_, burst_, tokens_;
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

// One WebSocket connection.
//
// Lifecycle: handshake → open (reading; writing from a bounded queue) → closing (a close frame
// after the queue drains) → closed. Every member is used on the stream's strand only; push(),
// send() and shutdown() may be called from any thread and post there. The object lives while an
// operation on it is pending (Beast's shared_from_this idiom).
class WsSession final : public std::enable_shared_from_this<WsSession>,
                        public PushTarget,
                        public FrameConnection,
                        public Closable {
 public:
  WsSession(Services& svc, beast::tcp_stream&& stream, http::request<http::string_body>&& upgrade,
            uint64_t user_id, std::string subprotocol)
      : svc_(svc),
        ws_(stream.release_socket()),  // Beast's WebSocket timer replaces the stream's timeouts
        upgrade_(std::move(upgrade)),
        subprotocol_(std::move(subprotocol)),
        binary_(is_binary_protocol(subprotocol_)),
        user_(user_id),
        id_(svc.next_connection_id++),
        bucket_(svc.config.ws_rate, svc.config.ws_burst),
        refusals_(svc.config.ws_rate, svc.config.ws_burst) {}

  ~WsSession() override { finish(); }

  void run() {
    svc_.connections.add(id_, weak_from_this());
    net::dispatch(ws_.get_executor(), [self = shared_from_this()] { self->on_run(); });
  }

  // PushTarget
  void push(std::vector<PushFrame> frames) override {
    std::unique_lock lock(inbox_mu_);
    bool first = inbox_.empty();
    for (auto& f : frames) inbox_.push_back(Inbound{Inbound::Kind::push, std::move(f.frame), f.info});
    lock.unlock();
    if (first) post_drain();
  }

  // FrameConnection
  void send(std::shared_ptr<const std::string> frame) override {
    to_inbox(Inbound{Inbound::Kind::send, std::move(frame), {}});
  }
  [[nodiscard]] uint64_t user_id() const override { return user_; }
  void remember_sent(uint64_t key) override {
    if (sent_order_.size() < kMaxSent) {
      sent_order_.push_back(key);
    } else {
      sent_.erase(sent_order_[sent_next_]);  // forget the oldest
      sent_order_[sent_next_] = key;
      sent_next_ = (sent_next_ + 1) % kMaxSent;
    }
    sent_.insert(key);
  }

  void command_sent() override { ++inflight_; }
  void answer(std::shared_ptr<const std::string> frame) override {
    to_inbox(Inbound{Inbound::Kind::answer, std::move(frame), {}});
  }

  // Closable
  void shutdown(uint16_t code) override {
    net::post(ws_.get_executor(), [self = shared_from_this(), code] { self->close(code, "server shutting down"); });
  }

 private:
  enum class State { handshake, open, closing, closed };

  void on_run() {
    websocket::stream_base::timeout t;
    t.handshake_timeout = svc_.config.ws_handshake_timeout;
    // The session keeps the idle timeout itself (check_liveness): Beast's re-arms a timer on every
    // read, a cancelled wait and a new one per message.
    t.idle_timeout = websocket::stream_base::none();
    t.keep_alive_pings = false;
    ws_.set_option(t);
    ws_.set_option(websocket::stream_base::decorator([sp = subprotocol_](websocket::response_type& res) {
      res.set(http::field::server, "imlog");
      if (!sp.empty()) res.set(http::field::sec_websocket_protocol, sp);
    }));
    ws_.read_message_max(0);  // the session enforces max_frame_bytes itself, to answer before closing
    ws_.auto_fragment(false);
    ws_.async_accept(upgrade_, beast::bind_front_handler(&WsSession::on_accept, shared_from_this()));
  }

  void on_accept(beast::error_code ec) {
    upgrade_ = {};
    if (ec) {
      logger("gateway")->debug("ws handshake of user {} failed: {}", user_, ec.message());
      return finish();
    }
    state_ = State::open;
    accepted_ = true;
    ws_.next_layer().handshake_done();
    svc_.metrics.ws_connections++;
    svc_.metrics.ws_accepted++;
    svc_.hub.add(user_, id_, std::weak_ptr<PushTarget>(shared_from_this()));
    last_heartbeat_ = std::chrono::steady_clock::now();
    if (svc_.stopping.load()) return close(1001, "server shutting down");
    // `hello` goes out once the session is in the registry: a client that has heard it is one
    // every router finds, so what is sent to it from then on is pushed, not left to its next sync.
    // The task holds the session: until greet() starts its reads and writes, nothing else does.
    bool queued = svc_.registry.post(user_, [&svc = svc_, user = user_, id = id_, self = shared_from_this()] {
      svc.sessions.connected(user, svc.gateway_id, id);
      if (svc.sessions.devices(user) == 1) announce_presence(svc, user);  // the first device: online
      net::post(self->ws_.get_executor(), [self] { self->greet(); });
    });
    if (!queued) {
      registry_work_dropped("connect");
      greet();  // the TTL and the next heartbeat register it
    }
  }

  // The protocol version, first on every connection; then the session starts writing and reading.
  void greet() {
    if (state_ != State::open) return;
    enqueue(hello_frame(subprotocol_, user_, svc_.clock.now_ms()));
    if (state_ != State::open) return;
    // Pushes that came while the registry took the session waited in the queue: hello goes first.
    std::rotate(queue_.rbegin(), queue_.rbegin() + 1, queue_.rend());
    greeted_ = true;
    if (!writing_) do_write();
    // A pong answers the server's keep-alive ping: the peer is alive even when it sends nothing.
    ws_.control_callback([this](websocket::frame_type kind, beast::string_view) {
      if (kind == websocket::frame_type::pong) on_alive();
    });
    ws_.next_layer().count_as_read_now();  // the silence is counted from the first read
    do_read();
    arm_liveness();
  }

  // Liveness (docs/api/websocket.md): a peer that sent nothing for half of heartbeat_timeout is
  // pinged; one silent for all of it is dropped. Any bytes read count (FrameLayer::last_read, a
  // pong included). One timer per session, armed once per half timeout, not once per read.
  void arm_liveness() {
    auto last = ws_.next_layer().last_read();
    auto timeout = svc_.config.heartbeat_timeout;
    if (state_ == State::closing) {
      liveness_.expires_at(closing_since_ + svc_.config.ws_handshake_timeout);
    } else {
      liveness_.expires_at(last + (pinged_silence_since_ == last ? timeout : timeout / 2));
    }
    liveness_.async_wait([weak = weak_from_this()](beast::error_code ec) {
      if (auto self = weak.lock(); self && !ec) self->check_liveness();
    });
  }

  void check_liveness() {
    if (state_ == State::closing) {
      if (std::chrono::steady_clock::now() - closing_since_ < svc_.config.ws_handshake_timeout) return arm_liveness();
      logger("gateway")->debug("dropping ws session {} of user {}: its close did not finish in {} ms", id_, user_,
                               svc_.config.ws_handshake_timeout.count());
      return abort();
    }
    if (state_ != State::open) return;
    auto last = ws_.next_layer().last_read();
    auto silent = std::chrono::steady_clock::now() - last;
    if (silent >= svc_.config.heartbeat_timeout) {
      svc_.metrics.heartbeat_timeouts++;
      logger("gateway")->debug("closing ws session {} of user {}: silent for {} ms", id_, user_,
                               std::chrono::duration_cast<std::chrono::milliseconds>(silent).count());
      return abort();
    }
    if (silent >= svc_.config.heartbeat_timeout / 2 && pinged_silence_since_ != last) {
      pinged_silence_since_ = last;
      if (!ping_in_flight_) {  // Beast takes one ping at a time
        ping_in_flight_ = true;
        ws_.async_ping({}, [self = shared_from_this()](beast::error_code) { self->ping_in_flight_ = false; });
      }
    }
    arm_liveness();
  }

  // Idle connections wait with a small read (chat frames are small, and the buffer of a pending
  // read is most of an idle connection's memory); a message that needs more reads in bigger steps.
  void do_read() {
    size_t room = svc_.config.max_frame_bytes + 1 - in_.size();
    size_t step = in_.size() == 0 ? 512 : 16 * 1024;
    ws_.async_read_some(in_, std::min(room, step), beast::bind_front_handler(&WsSession::on_read, shared_from_this()));
  }

  void on_read(beast::error_code ec, std::size_t) {
    if (ec) return finish();
    if (state_ != State::open) return;
    if (in_.size() > svc_.config.max_frame_bytes) {
      svc_.metrics.error("frame_too_large");
      enqueue(error_frame("frame_too_large", "a message is at most " + std::to_string(svc_.config.max_frame_bytes) +
                                                 " bytes; closing with 1009"));
      return close(static_cast<uint16_t>(websocket::close_code::too_big), "frame too large");
    }
    if (!ws_.is_message_done()) return do_read();
    svc_.metrics.frames_in++;
    on_alive();
    auto message = ws_.next_layer().scanner().take_message();
    bool was_text = message ? message->text : true;
    auto waited = time_unread(message);
    svc_.metrics.frame_wait.observe(waited);
    if (!bucket_.take()) {
      refuse_over_rate();
    } else if (was_text == binary_) {
      refuse_other_form();
    } else {
      auto data = in_.data();
      handle_message(svc_, shared_from_this(), std::string_view(static_cast<const char*>(data.data()), data.size()),
                     binary_, std::chrono::duration_cast<std::chrono::milliseconds>(waited));
    }
    in_.consume(in_.size());
    if (in_.capacity() > 4096) in_.shrink_to_fit();  // idle sessions stay small
    if (state_ != State::open) return;
    // Back-pressure: with max_inflight_commands waiting for the engine, read nothing more; the
    // client's further frames wait in TCP buffers until an answer comes (answer()).
    if (inflight_ >= svc_.config.max_inflight_commands) {
      read_paused_ = true;
      svc_.metrics.reads_paused++;
      return;
    }
    do_read();
  }

  void resume_reading() {
    if (!read_paused_ || state_ != State::open || inflight_ >= svc_.config.max_inflight_commands) return;
    read_paused_ = false;
    reading_since_ = std::chrono::steady_clock::now();
    do_read();
  }

  // How long a message waited for the gateway to read it: since it had arrived (FrameScanner), or
  // since this session last resumed reading, if later — a pause at max_inflight_commands is the
  // client's own back-pressure, not the gateway falling behind, and is not held against it.
  std::chrono::steady_clock::duration time_unread(const std::optional<FrameScanner::Message>& m) const {
    if (!m || !m->arrived) return std::chrono::steady_clock::duration::zero();
    return std::chrono::steady_clock::now() - std::max(*m->arrived, reading_since_);
  }

  // Every message, text or binary, well-formed or not, takes a token before anything reads it, so
  // no kind of frame escapes the limit. A refused one is answered `rate_limited` without being
  // read; refusals draw on a second bucket of the same shape, and a connection that empties that
  // too (sending over about twice ws_rate, or two bursts at once) is closed with 1008.
  void refuse_over_rate() {
    svc_.metrics.error("rate_limited");
    auto limit = fmt::format("too many frames: at most {:g} per second (burst {:g})", svc_.config.ws_rate,
                             svc_.config.ws_burst);
    if (refusals_.take()) return enqueue(error_frame("rate_limited", limit + "; slow down and retry"));
    enqueue(error_frame("rate_limited", limit + ", and still sending; closing with 1008"));
    close(static_cast<uint16_t>(websocket::close_code::policy_error), "rate limit exceeded");
  }

  // A connection speaks one form, the one its subprotocol names: a message of the other is
  // answered, unread, and the connection stays open.
  void refuse_other_form() {
    if (binary_) {
      svc_.metrics.error("text_unsupported");
      return enqueue(error_frame("text_unsupported",
                                 "this connection speaks imlog.v1, binary frames of docs/api/websocket.fbs: send "
                                 "binary frames (JSON text frames need subprotocol imlog.v1.json)"));
    }
    svc_.metrics.error("binary_unsupported");
    enqueue(error_frame("binary_unsupported",
                        "this connection speaks imlog.v1.json: send JSON text frames (binary frames need "
                        "subprotocol imlog.v1)"));
  }

  // Frames from other threads (answers, sends, pushes) wait in the inbox, in the order they came;
  // the one that finds it empty posts a drain to the strand, and the rest ride along: one post
  // per burst instead of one per frame (a one-to-one message's ack and its echo to the sender,
  // which take_sent() drops, arrive together).
  struct Inbound {
    enum class Kind : uint8_t { send, answer, push };
    Kind kind;
    std::shared_ptr<const std::string> frame;
    PushInfo info;  // of a push
  };

  void to_inbox(Inbound in) {
    std::unique_lock lock(inbox_mu_);
    bool first = inbox_.empty();
    inbox_.push_back(std::move(in));
    lock.unlock();
    if (first) post_drain();
  }

  void post_drain() {
    net::post(ws_.get_executor(), [self = shared_from_this()] { self->drain_inbox(); });
  }

  void drain_inbox() {
    {
      std::lock_guard lock(inbox_mu_);
      draining_.swap(inbox_);
    }
    holding_writes_ = true;  // every frame of the burst first, then one write
    for (auto& in : draining_) {
      switch (in.kind) {
        case Inbound::Kind::push:
          // The session that sent a message got its ack; the push is for the sender's other devices.
          if (in.info.sent_key != 0 && in.info.actor == user_ && take_sent(in.info.sent_key)) break;
          svc_.metrics.push_frames++;
          enqueue(std::move(in.frame));
          break;
        case Inbound::Kind::send:
          enqueue(std::move(in.frame));
          break;
        case Inbound::Kind::answer:
          enqueue(std::move(in.frame));
          --inflight_;
          resume_reading();
          break;
      }
    }
    draining_.clear();
    holding_writes_ = false;
    if (!writing_ && greeted_ && !queue_.empty()) do_write();
  }

  // Frames are rendered as JSON; a binary connection's are encoded here, on its strand.
  void enqueue(std::shared_ptr<const std::string> frame) {
    if (state_ != State::open) return;
    if (binary_) frame = to_binary(*frame);
    if (queue_.size() >= svc_.config.max_queued_frames || queued_bytes_ + frame->size() > svc_.config.max_queued_bytes) {
      // Too slow to read: drop the connection rather than grow without bound. The client
      // reconnects and syncs what it missed.
      svc_.metrics.slow_consumers++;
      logger("gateway")->info("closing ws session {} of user {}: write queue full ({} frames, {} bytes)", id_, user_,
                              queue_.size(), queued_bytes_);
      return abort();
    }
    queued_bytes_ += frame->size();
    queue_.push_back(std::move(frame));
    if (!writing_ && greeted_ && !holding_writes_) do_write();
  }

  // The binary frame of a JSON frame. A frame the schema lacks is a server bug: logged, and the
  // client gets an `internal` error in its place rather than nothing.
  std::shared_ptr<const std::string> to_binary(const std::string& json) {
    std::string out, why;
    if (ws_frame_to_binary(json, out, why)) return std::make_shared<const std::string>(std::move(out));
    svc_.metrics.error("internal");
    logger("gateway")->error("cannot encode a frame for imlog.v1 (user {}): {}; the frame: {}", user_, why,
                             json.substr(0, 200));
    auto error = error_frame("internal", "the server could not encode a frame in imlog.v1; it was dropped: " + why);
    ws_frame_to_binary(*error, out, why);
    return std::make_shared<const std::string>(std::move(out));
  }

  // Every queued frame, up to kMaxWriteBytes, in one socket write (frame_layer.h); again while
  // the socket takes each batch at once and more is queued.
  void do_write() {
    do {
      writing_ = true;
      batch_.clear();
      size_t bytes = 0;
      for (const auto& f : queue_) {
        if (!batch_.empty() && bytes + f->size() > kMaxWriteBytes) break;
        batch_.push_back(f);
        bytes += f->size();
      }
      if (!ws_.next_layer().write_frames(batch_, binary_,
                                         beast::bind_front_handler(&WsSession::on_write, shared_from_this()))) {
        return;  // on_write follows
      }
    } while (written());
  }

  void on_write(beast::error_code ec, std::size_t) {
    if (ec) {
      writing_ = false;
      return finish();
    }
    if (written()) do_write();
  }

  // The batch went out: off the queue. Whether more is queued to write now.
  bool written() {
    writing_ = false;
    svc_.metrics.frames_out += batch_.size();
    svc_.metrics.socket_writes++;
    for (size_t i = 0; i < batch_.size(); ++i) {
      queued_bytes_ -= queue_.front()->size();
      queue_.pop_front();
    }
    batch_.clear();
    if (state_ == State::closed) return false;
    if (!queue_.empty()) return true;
    if (close_pending_) do_close();
    return false;
  }

  // Graceful close: a close frame once the queued frames are written.
  void close(uint16_t code, std::string reason) {
    if (state_ == State::handshake) return abort();
    if (state_ != State::open) return;
    state_ = State::closing;
    close_code_ = code;
    close_reason_ = std::move(reason);
    // A peer that stops reading could hold a closing session for good (a write that never ends,
    // then a close handshake that never starts): past ws_handshake_timeout it is dropped.
    closing_since_ = std::chrono::steady_clock::now();
    if (greeted_) arm_liveness();
    if (writing_) {
      close_pending_ = true;
    } else {
      do_close();
    }
  }

  void do_close() {
    close_pending_ = false;
    ws_.async_close(websocket::close_reason(static_cast<websocket::close_code>(close_code_), close_reason_),
                    beast::bind_front_handler(&WsSession::on_close, shared_from_this()));
  }

  void on_close(beast::error_code) { finish(); }

  // Hard close: the socket goes; pending operations fail and release the session.
  void abort() {
    state_ = State::closed;
    beast::error_code ec;
    beast::get_lowest_layer(ws_).close(ec);
    finish();
  }

  // The peer showed it is alive: refresh the registry's TTL and last-seen time, at most once per
  // kHeartbeatEvery (the registry may be Redis, a round trip away).
  void on_alive() {
    auto now = std::chrono::steady_clock::now();
    if (now - last_heartbeat_ < kHeartbeatEvery) return;
    last_heartbeat_ = now;
    registry_work("heartbeat", [&svc = svc_, user = user_, id = id_] { svc.sessions.heartbeat(user, svc.gateway_id, id); });
  }

  // Registry work of this session, off the I/O thread on the user's registry worker, so in the
  // order posted (connect, heartbeats, disconnect). Fire and forget: dropped when the worker's
  // queue is full (the registry is stalled); the session's TTL and its next heartbeat heal it.
  void registry_work(const char* what, std::function<void()> fn) {
    if (!svc_.registry.post(user_, std::move(fn))) registry_work_dropped(what);
  }

  void registry_work_dropped(const char* what) const {
    static std::atomic<uint64_t> dropped{0};
    if (dropped.fetch_add(1) % 1000 == 0) {
      logger("gateway")->warn("session registry queue full: dropped a {} of user {} ({} dropped so far)", what,
                              user_, dropped.load());
    }
  }

  // Whether this connection sent the message (then it had its ack; no echo). Forgets it.
  bool take_sent(uint64_t key) {
    if (sent_.erase(key) == 0) return false;
    if (sent_.empty()) {  // idle again: give the memory back
      sent_ = {};
      sent_order_ = {};
      sent_next_ = 0;
    }
    return true;
  }

  // Unregisters, once.
  void finish() {
    if (finished_) return;
    finished_ = true;
    state_ = State::closed;
    if (accepted_) {
      svc_.hub.remove(user_, id_);
      svc_.metrics.ws_connections--;
      registry_work("disconnect", [&svc = svc_, user = user_, id = id_] {
        svc.sessions.disconnected(user, svc.gateway_id, id);
        if (svc.sessions.devices(user) == 0) announce_presence(svc, user);  // the last device: offline
      });
    }
    svc_.connections.remove(id_);
  }

  Services& svc_;
  websocket::stream<FrameLayer<tcp::socket>, /*deflateSupported=*/false> ws_;
  http::request<http::string_body> upgrade_;
  std::string subprotocol_;
  const bool binary_;  // imlog.v1: binary frames both ways
  const uint64_t user_;
  const uint64_t id_;
  beast::flat_buffer in_;
  std::deque<std::shared_ptr<const std::string>> queue_;
  std::vector<std::shared_ptr<const std::string>> batch_;  // the frames of the write in flight
  static constexpr size_t kMaxWriteBytes = 256 * 1024;
  uint64_t queued_bytes_ = 0;
  bool writing_ = false;
  bool close_pending_ = false;
  bool accepted_ = false;
  bool greeted_ = false;  // hello is queued first: writes may start
  bool finished_ = false;
  State state_ = State::handshake;
  uint16_t close_code_ = 1000;
  std::string close_reason_;
  TokenBucket bucket_;    // every message takes a token
  TokenBucket refusals_;  // every message refused for want of one takes a token; empty: closed
  uint32_t inflight_ = 0;      // commands sent and not yet answered
  bool read_paused_ = false;   // reading stopped at max_inflight_commands
  std::chrono::steady_clock::time_point reading_since_{};  // when reading last resumed after a pause
  static constexpr std::chrono::seconds kHeartbeatEvery{5};
  std::chrono::steady_clock::time_point last_heartbeat_{};
  net::steady_timer liveness_{ws_.get_executor()};
  // The last read before the silence this session pinged the peer over (FrameLayer::last_read).
  FrameScanner::Clock::time_point pinged_silence_since_{};
  bool ping_in_flight_ = false;
  std::chrono::steady_clock::time_point closing_since_{};  // when close() began
  bool holding_writes_ = false;  // drain_inbox() queues a burst before writing it
  // Messages sent on this connection whose push has not come back yet (echo suppression), at most
  // kMaxSent, the oldest forgotten first.
  static constexpr size_t kMaxSent = 1024;
  std::unordered_set<uint64_t> sent_;
  std::vector<uint64_t> sent_order_;
  size_t sent_next_ = 0;
  std::mutex inbox_mu_;
  std::vector<Inbound> inbox_;     // under inbox_mu_
  std::vector<Inbound> draining_;  // the strand's: what drain_inbox() took
};

}  // namespace

void start_ws_session(Services& svc, beast::tcp_stream&& stream, http::request<http::string_body>&& upgrade,
                      uint64_t user_id, std::string subprotocol) {
  std::make_shared<WsSession>(svc, std::move(stream), std::move(upgrade), user_id, std::move(subprotocol))->run();
}

}  // namespace imlog::gw
