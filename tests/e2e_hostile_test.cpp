// End to end, hostile input (issue 12): what an attacker can send from outside, over real sockets
// to the built `imlog serve`: JSON nested deep enough to overflow a recursive parser, strings that
// decode to invalid UTF-8, request smuggling through Transfer-Encoding, and floods of frames that
// are never valid. Each test checks the answer and that the server is still up.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cctype>
#include <string>
#include <string_view>

#include <fmt/format.h>
#include <rapidjson/document.h>

#include "imlog/testing/client.h"
#include "imlog/testing/imlog_server.h"
#include "imlog/testing/support.h"

namespace imlog::testing {
namespace {

using namespace std::chrono_literals;

constexpr auto kFrameWait = 10s;

// Cheap password hashing; a small WebSocket send rate so a flood runs past it in a few frames.
// Body, frame and avatar limits are the defaults (1 MiB, 128 KiB, 2 MiB): the attacks fit under them.
constexpr std::string_view kTestConfig = R"(
log: {level: warn}
gateway:
  password_ops_limit: 1
  password_mem_limit: 8KiB
  ws_rate: 5
  ws_burst: 10
  read_model_wait: 5s
  cors_origins: [http://app.example]
)";

struct User {
  std::string name;
  uint64_t id = 0;
  std::string token;
};

std::string unique_name(std::string_view base) {
  static std::atomic<int> n{0};
  return fmt::format("{}_{}_{}", base, ::getpid() % 100000, n++);
}

User make_user(const ImlogServer& s, std::string_view base) {
  User u;
  u.name = unique_name(base);
  auto reg = s.http().post("/api/v1/auth/register",
                           fmt::format(R"({{"username":{},"password":"correct horse"}})", json_quote(u.name)));
  EXPECT_EQ(reg.status, 201) << reg.body << reg.error;
  if (reg.status != 201) return u;
  u.id = reg.json()["user_id"].GetUint64();
  auto login = s.http().post("/api/v1/auth/login",
                             fmt::format(R"({{"username":{},"password":"correct horse"}})", json_quote(u.name)));
  EXPECT_EQ(login.status, 200) << login.body;
  if (login.status == 200) u.token = login.json()["access_token"].GetString();
  return u;
}

// Is `body` a JSON object whose strings are all valid UTF-8 (RapidJSON's own check)?
bool valid_json_utf8(const std::string& body) {
  rapidjson::Document d;
  d.Parse<rapidjson::kParseValidateEncodingFlag>(body.data(), body.size());
  return !d.HasParseError() && d.IsObject();
}

std::string code_of(const HttpResult& r) {
  auto j = r.json();
  return j.IsObject() && j.HasMember("code") && j["code"].IsString() ? j["code"].GetString() : "";
}

std::string message_of(const HttpResult& r) {
  auto j = r.json();
  return j.IsObject() && j.HasMember("message") && j["message"].IsString() ? j["message"].GetString() : "";
}

// What the server sent back on a plain TCP connection that wrote `bytes`, read until the server
// closed it or `timeout` passed with nothing more.
struct RawExchange {
  std::string received;
  bool closed = false;  // the server closed the connection (EOF or reset), rather than a time-out
};

RawExchange raw_exchange(int port, std::string_view bytes, std::chrono::milliseconds timeout = 5s) {
  RawExchange out;
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return out;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return out;
  }
  size_t sent = 0;
  while (sent < bytes.size()) {
    auto n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  char buf[4096];
  for (;;) {
    auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      out.received.append(buf, static_cast<size_t>(n));
      continue;
    }
    out.closed = n == 0 || errno == ECONNRESET;
    break;
  }
  ::close(fd);
  return out;
}

// How many HTTP responses a raw exchange holds (status lines: "HTTP/1.x NNN ").
int responses_in(const std::string& received) {
  int n = 0;
  for (size_t at = received.find("HTTP/1."); at != std::string::npos; at = received.find("HTTP/1.", at + 1)) {
    auto line = std::string_view(received).substr(at, 13);
    n += line.size() == 13 && line[8] == ' ' && std::isdigit(static_cast<unsigned char>(line[9])) &&
         std::isdigit(static_cast<unsigned char>(line[10])) && std::isdigit(static_cast<unsigned char>(line[11])) &&
         line[12] == ' ';
  }
  return n;
}

// ---- one server for the suite ---------------------------------------------------------------------

class E2eHostile : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("imlog-e2e-hostile");
    server_ = new ImlogServer(dir_->str(), kTestConfig);
    EXPECT_TRUE(server_->start()) << "imlog did not become ready on port " << server_->port();
  }
  static void TearDownTestSuite() {
    if (server_ && server_->running()) {
      auto st = server_->terminate();
      EXPECT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << "imlog did not stop cleanly on SIGTERM";
    }
    delete server_;
    delete dir_;
    server_ = nullptr;
    dir_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(server_ && server_->running()) << "the server did not start"; }
  void TearDown() override {
    EXPECT_EQ(s().http().get("/healthz").status, 200) << "the server did not survive the test";
  }
  static const ImlogServer& s() { return *server_; }

  static TempDir* dir_;
  static ImlogServer* server_;
};
TempDir* E2eHostile::dir_ = nullptr;
ImlogServer* E2eHostile::server_ = nullptr;

// ---- JSON nesting ---------------------------------------------------------------------------------

TEST_F(E2eHostile, DeeplyNestedJsonOnRestIsRefusedNamingTheLimit) {
  // 140 KB of '[' overflowed the recursive parser's stack: one anonymous request killed the server.
  auto deep = s().http().post("/api/v1/auth/login", std::string(140'000, '['));
  ASSERT_EQ(deep.status, 400) << deep.body << deep.error;
  EXPECT_EQ(code_of(deep), "invalid") << deep.body;
  EXPECT_NE(message_of(deep).find("32"), std::string::npos) << "names the limit: " << deep.body;

  // Deep inside an object that is otherwise fine, on an authenticated route.
  User a = make_user(s(), "deep");
  std::string body = R"({"name":)" + std::string(40, '[') + std::string(40, ']') + "}";
  auto nested = s().http().post("/api/v1/groups", body, a.token);
  EXPECT_EQ(nested.status, 400) << nested.body;
  EXPECT_EQ(code_of(nested), "invalid") << nested.body;
  EXPECT_EQ(s().http().get("/healthz").status, 200);
}

TEST_F(E2eHostile, DeeplyNestedJsonFrameGetsAnErrorAndTheConnectionSurvives) {
  User a = make_user(s(), "deepws");
  auto ws = WsClient::connect("127.0.0.1", s().port(), "/ws?token=" + a.token);
  ASSERT_TRUE(ws);
  ws->send_text(std::string(128 * 1024, '['));  // exactly max_frame_bytes
  auto e = ws->wait_for("error", kFrameWait);
  ASSERT_TRUE(e) << "no answer: the server is " << (s().http().get("/healthz").status == 200 ? "up" : "down");
  EXPECT_EQ(e->str("code"), "invalid") << e->raw;
  EXPECT_NE(e->str("message").find("32"), std::string::npos) << e->raw;
  ws->send("ping", "{}");
  EXPECT_TRUE(ws->wait_for("pong", kFrameWait)) << "the connection survived";
}

// The binary form (imlog.v1): a message of max_frame_bytes that is no FlatBuffer, and one whose
// root offset points far outside it, are answered and the connection stays.
TEST_F(E2eHostile, BinaryMessagesThatAreNoFrameGetAnErrorAndTheConnectionSurvives) {
  User a = make_user(s(), "garbagebin");
  auto ws = WsClient::connect("127.0.0.1", s().port(), "/ws?token=" + a.token, {}, nullptr, nullptr, true, kWsBinary);
  ASSERT_TRUE(ws);
  ws->send_binary(std::string(128 * 1024, '\xff'));  // exactly max_frame_bytes
  auto e = ws->wait_for("error", kFrameWait);
  ASSERT_TRUE(e) << "no answer: the server is " << (s().http().get("/healthz").status == 200 ? "up" : "down");
  EXPECT_EQ(e->str("code"), "invalid_binary") << e->raw;
  EXPECT_NE(e->str("message").find("131072 bytes"), std::string::npos) << e->raw;
  ws->send_binary(std::string("\xf0\xff\xff\x7fIMW1\0\0\0\0", 12));  // root table at +2 GiB
  e = ws->wait_for("error", kFrameWait);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->str("code"), "invalid_binary") << e->raw;
  EXPECT_NE(e->str("message").find("verification"), std::string::npos) << e->raw;
  ws->send("ping", "{}");
  EXPECT_TRUE(ws->wait_for("pong", kFrameWait)) << "the connection survived";
}

// ---- UTF-8 ----------------------------------------------------------------------------------------

TEST_F(E2eHostile, LoneSurrogateEscapesAreRefusedNamingTheField) {
  // RapidJSON decodes "\udc00" into bytes that are not UTF-8, even when it validates the input.
  auto reg = s().http().post("/api/v1/auth/register",
                             fmt::format(R"({{"username":{},"password":"correct horse","email":"e\udc00@x"}})",
                                         json_quote(unique_name("surr"))));
  ASSERT_EQ(reg.status, 400) << reg.body;
  EXPECT_EQ(code_of(reg), "invalid_json") << reg.body;
  EXPECT_NE(message_of(reg).find("email"), std::string::npos) << reg.body;
  EXPECT_NE(message_of(reg).find("offset"), std::string::npos) << reg.body;
  EXPECT_TRUE(valid_json_utf8(reg.body)) << reg.body;

  User a = make_user(s(), "surrws");
  auto ws = WsClient::connect("127.0.0.1", s().port(), "/ws?token=" + a.token);
  ASSERT_TRUE(ws);
  ws->send("send-message", R"({"conversation_id":"world","client_msg_id":"s1","content":"a\udfff"})");
  auto e = ws->wait_for("error", kFrameWait);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->str("code"), "invalid_json") << e->raw;
  EXPECT_NE(e->str("message").find("content"), std::string::npos) << e->raw;
  // A proper pair is a character, not an error.
  ws->send("send-message", R"({"conversation_id":"world","client_msg_id":"s2","content":"\ud83d\ude00"})");
  auto ack = ws->wait_for("message-ack", kFrameWait);
  ASSERT_TRUE(ack) << "an escaped surrogate pair is accepted";
}

TEST_F(E2eHostile, MutedTakesOnlyConversationIds) {
  User a = make_user(s(), "mute");
  auto patch = [&](std::string_view body) {
    return s().http().request("PATCH", "/api/v1/users/me/settings", body, a.token);
  };
  auto surrogate = patch(R"({"muted":["x\udc00"]})");
  EXPECT_EQ(surrogate.status, 400) << surrogate.body;
  EXPECT_NE(message_of(surrogate).find("muted"), std::string::npos) << surrogate.body;
  auto junk = patch(R"({"muted":["world","not a conversation"]})");
  EXPECT_EQ(junk.status, 400) << junk.body;
  EXPECT_EQ(code_of(junk), "invalid") << junk.body;
  EXPECT_NE(message_of(junk).find("muted[1]"), std::string::npos) << junk.body;
  auto long_one = patch(fmt::format(R"({{"muted":["group_{}"]}})", std::string(5000, '1')));
  EXPECT_EQ(long_one.status, 400) << long_one.body;
  EXPECT_LT(long_one.body.size(), 500u) << "the error does not echo 5000 bytes back";
  std::string many = R"({"muted":[)";
  for (int i = 1; i <= 1001; ++i) many += fmt::format(R"({}"group_{}")", i == 1 ? "" : ",", i);
  auto too_many = patch(many + "]}");
  EXPECT_EQ(too_many.status, 400) << too_many.body;

  auto ok = patch(fmt::format(R"({{"muted":["world","group_7","single_{}_{}"]}})", a.id, a.id + 1));
  EXPECT_EQ(ok.status, 204) << ok.body;
}

TEST_F(E2eHostile, ErrorBodiesNeverCarryInvalidUtf8) {
  User a = make_user(s(), "echo");
  // The path segment decodes to the byte 0xFF, which the error message names.
  for (std::string target : {"/api/v1/groups/%FF", "/api/v1/users/%C0%AF", "/api/v1/groups/%ED%A0%80/members"}) {
    auto r = s().http().get(target, a.token);
    EXPECT_GE(r.status, 400) << target;
    EXPECT_TRUE(valid_json_utf8(r.body)) << target << " answered " << r.body;
  }
  auto bad_query = s().http().get("/api/v1/conversations/world/messages?before_seq=%FF", a.token);
  EXPECT_EQ(bad_query.status, 400) << bad_query.body;
  EXPECT_TRUE(valid_json_utf8(bad_query.body)) << bad_query.body;
}

// ---- HTTP framing ---------------------------------------------------------------------------------

TEST_F(E2eHostile, TransferEncodingOtherThanChunkedIsRefusedAndTheConnectionCloses) {
  // Each request's body is a second request: taken as bodiless, it would be answered as one.
  const std::string smuggled = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  for (std::string te : {"Transfer-Encoding: gzip\r\n", "Transfer-Encoding: chunked, identity\r\n",
                         "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n",
                         "Transfer-Encoding: gzip\r\nContent-Length: 0\r\n"}) {
    std::string request = "POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\n" + te + "\r\n" + smuggled;
    auto x = raw_exchange(s().port(), request);
    SCOPED_TRACE(te);
    EXPECT_TRUE(x.received.starts_with("HTTP/1.1 400")) << x.received;
    EXPECT_NE(x.received.find("Transfer-Encoding"), std::string::npos) << "names the header: " << x.received;
    EXPECT_EQ(responses_in(x.received), 1) << "the body was answered as a request: " << x.received;
    EXPECT_TRUE(x.closed) << "the connection stays open after a request with a bad framing";
  }
  // HTTP/1.0 knows no Transfer-Encoding (RFC 9112 §6.1).
  auto old = raw_exchange(s().port(), "POST /api/v1/auth/login HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                      "0\r\n\r\n" + smuggled);
  EXPECT_TRUE(old.received.starts_with("HTTP/1.0 400")) << old.received;
  EXPECT_EQ(responses_in(old.received), 1) << old.received;
  EXPECT_TRUE(old.closed);

  // Exactly `chunked` is fine, and the connection is kept for the next request.
  std::string body = R"({"name":"no token, so 401"})";
  auto chunked = raw_exchange(s().port(), fmt::format("POST /api/v1/groups HTTP/1.1\r\nHost: x\r\n"
                                                      "Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{}\r\n0\r\n\r\n"
                                                      "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                                                      body.size(), body));
  EXPECT_TRUE(chunked.received.starts_with("HTTP/1.1 401")) << chunked.received;
  EXPECT_EQ(responses_in(chunked.received), 2) << "a second request on a sound connection is served: "
                                               << chunked.received;
}

TEST_F(E2eHostile, BodyLimitsAreTheRoutesAndNamedInThe413) {
  // A Content-Length over the limit is refused from the header alone; the 413 names the limit.
  auto over = raw_exchange(s().port(), "POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n");
  EXPECT_TRUE(over.received.starts_with("HTTP/1.1 413")) << over.received;
  EXPECT_NE(over.received.find("over 1048576 bytes"), std::string::npos) << over.received;
  EXPECT_TRUE(over.closed);

  // A chunked body is counted as it comes; the 413 names the same limit.
  std::string chunk(600'000, 'x');
  auto chunked = raw_exchange(s().port(), fmt::format("POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\n"
                                                      "Transfer-Encoding: chunked\r\n\r\n{0:x}\r\n{1}\r\n"
                                                      "{0:x}\r\n{1}\r\n0\r\n\r\n",
                                                      chunk.size(), chunk));
  EXPECT_TRUE(chunked.received.starts_with("HTTP/1.1 413")) << chunked.received;
  EXPECT_NE(chunked.received.find("over 1048576 bytes"), std::string::npos) << chunked.received;

  // The avatar route takes up to avatar_max_bytes (2 MiB), over max_body_bytes (1 MiB).
  User a = make_user(s(), "bigface");
  std::string png("\x89PNG\r\n\x1a\n", 8);
  png.resize(1'500'000, 'p');
  auto up = s().http().post("/api/v1/users/me/avatar", png, a.token);
  EXPECT_EQ(up.status, 200) << up.body;
  auto too_big = raw_exchange(s().port(), "POST /api/v1/users/me/avatar HTTP/1.1\r\nHost: x\r\n"
                                          "Authorization: Bearer " + a.token + "\r\nContent-Length: 3000000\r\n\r\n");
  EXPECT_TRUE(too_big.received.starts_with("HTTP/1.1 413")) << too_big.received;
  EXPECT_NE(too_big.received.find("over 2097153 bytes"), std::string::npos) << too_big.received;
}

// ---- CORS --------------------------------------------------------------------------------------

std::string lowercase(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

TEST_F(E2eHostile, CorsAnswersPreflightsOnlyForTheListedOrigins) {
  auto preflight = [&](std::string_view origin) {
    return lowercase(raw_exchange(s().port(), fmt::format("OPTIONS /api/v1/conversations HTTP/1.1\r\nHost: x\r\n"
                                                          "Origin: {}\r\nAccess-Control-Request-Method: GET\r\n"
                                                          "Access-Control-Request-Headers: authorization\r\n"
                                                          "Connection: close\r\n\r\n",
                                                          origin))
                         .received);
  };
  auto listed = preflight("http://app.example");
  EXPECT_TRUE(listed.starts_with("http/1.1 204")) << listed;
  EXPECT_NE(listed.find("access-control-allow-origin: http://app.example\r\n"), std::string::npos) << listed;
  EXPECT_NE(listed.find("access-control-allow-methods: get\r\n"), std::string::npos) << listed;
  EXPECT_NE(listed.find("access-control-allow-headers: authorization, content-type, x-request-id\r\n"), std::string::npos) << listed;
  EXPECT_NE(listed.find("vary: origin\r\n"), std::string::npos) << listed;
  EXPECT_EQ(listed.find("access-control-allow-credentials"), std::string::npos) << listed;
  EXPECT_EQ(listed.find("*"), std::string::npos) << "never a wildcard: " << listed;

  auto other = preflight("http://evil.example");
  EXPECT_TRUE(other.starts_with("http/1.1 204")) << other;
  EXPECT_EQ(other.find("access-control-allow"), std::string::npos) << "an unlisted origin gets no grant: " << other;

  // OPTIONS without an Origin says what the path takes; an unknown path is still 404.
  auto plain = lowercase(
      raw_exchange(s().port(), "OPTIONS /api/v1/users/me HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").received);
  EXPECT_TRUE(plain.starts_with("http/1.1 204")) << plain;
  EXPECT_NE(plain.find("allow: get, patch, delete, options\r\n"), std::string::npos) << plain;
  auto nowhere =
      raw_exchange(s().port(), "OPTIONS /api/v1/nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").received;
  EXPECT_TRUE(nowhere.starts_with("HTTP/1.1 404")) << nowhere;

  // The actual request's reply, even an error, carries the grant so the page can read it.
  auto denied = lowercase(raw_exchange(s().port(), "GET /api/v1/conversations HTTP/1.1\r\nHost: x\r\n"
                                                   "Origin: http://app.example\r\nConnection: close\r\n\r\n")
                              .received);
  EXPECT_TRUE(denied.starts_with("http/1.1 401")) << denied;
  EXPECT_NE(denied.find("access-control-allow-origin: http://app.example\r\n"), std::string::npos) << denied;
  EXPECT_NE(denied.find("access-control-expose-headers: retry-after, www-authenticate, x-request-id\r\n"), std::string::npos)
      << denied;
}

// ---- WebSocket rate limit -------------------------------------------------------------------------

TEST_F(E2eHostile, AFloodOfMalformedFramesIsRateLimited) {
  User a = make_user(s(), "floodjson");
  auto ws = WsClient::connect("127.0.0.1", s().port(), "/ws?token=" + a.token);
  ASSERT_TRUE(ws);
  for (int i = 0; i < 30; ++i) ws->send_text("{not json");
  auto limited = ws->wait_for("error", kFrameWait, [](const Frame& f) { return f.str("code") == "rate_limited"; });
  EXPECT_TRUE(limited) << "malformed frames were never rate limited";
  auto parsed = ws->take_all("error");
  size_t answered = 0;
  for (const auto& f : parsed) answered += f.str("code") == "invalid_json";
  EXPECT_LE(answered, 10u + 5u) << "more frames were parsed than the burst (10) and a second's refill allow";
}

TEST_F(E2eHostile, AFloodOfMalformedBinaryFramesIsRateLimited) {
  User a = make_user(s(), "floodimlogv1");
  auto ws = WsClient::connect("127.0.0.1", s().port(), "/ws?token=" + a.token, {}, nullptr, nullptr, true, kWsBinary);
  ASSERT_TRUE(ws);
  for (int i = 0; i < 30; ++i) ws->send_binary("\x01\x02");
  auto limited = ws->wait_for("error", kFrameWait, [](const Frame& f) { return f.str("code") == "rate_limited"; });
  EXPECT_TRUE(limited) << "malformed binary frames were never rate limited";
  auto decoded = ws->take_all("error");
  size_t answered = 0;
  for (const auto& f : decoded) answered += f.str("code") == "invalid_binary";
  EXPECT_GE(answered, 1u);
  EXPECT_LE(answered, 10u + 5u) << "more frames were decoded than the burst (10) and a second's refill allow";
}

TEST_F(E2eHostile, AFloodOfBinaryFramesIsRateLimitedThenClosedWithPolicyViolation) {
  User a = make_user(s(), "floodbin");
  auto ws = WsClient::connect("127.0.0.1", s().port(), "/ws?token=" + a.token);
  ASSERT_TRUE(ws);
  for (int i = 0; i < 200; ++i) ws->send_binary("\x01\x02");
  auto limited = ws->wait_for("error", kFrameWait, [](const Frame& f) { return f.str("code") == "rate_limited"; });
  EXPECT_TRUE(limited) << "binary frames were never rate limited";
  auto code = ws->wait_closed(kFrameWait);
  ASSERT_TRUE(code) << "a connection flooding far past the limit stays open";
  EXPECT_EQ(*code, 1008);
}

}  // namespace
}  // namespace imlog::testing
