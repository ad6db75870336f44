// The chat app at / (issues 12 and 20): what the gateway sends with it — a Content-Security-Policy
// with nothing inline allowed, nosniff, no referrer, no framing — and, in a real headless Chromium
// driven over the DevTools protocol, that hostile names and messages show as text and run nothing
// while the page still works (sign in, list, open, send over the WebSocket). The app's own browser
// tests (web/test/, puppeteer-core) drive whole conversations; this one needs no Node.js.
//
// Against the built `imlog serve` on a free loopback port; Chromium is Debian's (scripts/setup).
// Every wait has a deadline; nothing sleeps.

#include <sys/wait.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "imlog/testing/client.h"
#include "imlog/testing/imlog_server.h"
#include "imlog/testing/support.h"

namespace imlog::testing {
namespace {

using namespace std::chrono_literals;

constexpr auto kPageWait = 20s;
constexpr std::string_view kChromium = "/usr/bin/chromium";
constexpr std::string_view kPassword = "correct horse";

// Cheap password hashing, so registering and logging in take no time.
constexpr std::string_view kTestConfig = R"(
log: {level: warn}
gateway:
  password_ops_limit: 1
  password_mem_limit: 8KiB
  read_model_wait: 5s
)";

// Names that run script when a page treats them as markup: each would set the title.
const std::string kGroupName = R"(<img src=x onerror="document.title='pwned by a group name'">)";
const std::string kNickname = R"(<img src=x onerror="document.title='pwned by a nickname'">)";
const std::string kMessage = R"(<img src=x onerror="document.title='pwned by a message'"><b>bold?</b>)";

struct User {
  std::string name;
  uint64_t id = 0;
  std::string token;
};

User make_user(const ImlogServer& s, std::string_view base, const std::string& nickname) {
  static int n = 0;
  User u;
  u.name = fmt::format("{}_{}_{}", base, ::getpid() % 100000, n++);
  auto reg = s.http().post("/api/v1/auth/register", fmt::format(R"({{"username":{},"password":{},"nickname":{}}})",
                                                                json_quote(u.name), json_quote(kPassword),
                                                                json_quote(nickname)));
  EXPECT_EQ(reg.status, 201) << reg.body << reg.error;
  if (reg.status != 201) return u;
  u.id = reg.json()["user_id"].GetUint64();
  auto login = s.http().post("/api/v1/auth/login", fmt::format(R"({{"username":{},"password":{}}})",
                                                               json_quote(u.name), json_quote(kPassword)));
  EXPECT_EQ(login.status, 200) << login.body;
  if (login.status == 200) u.token = login.json()["access_token"].GetString();
  return u;
}

std::string single(uint64_t a, uint64_t b) { return fmt::format("single_{}_{}", std::min(a, b), std::max(a, b)); }

std::string to_json(const rapidjson::Value& v) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  v.Accept(w);
  return std::string(buf.GetString(), buf.GetSize());
}

class WebPage : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.start()) << "imlog did not become ready on port " << server_.port(); }

  TempDir dir_{"imlog-web"};
  ImlogServer server_{dir_.str(), kTestConfig};
};

// ---- the headers ----------------------------------------------------------------------------------

// The page, its script and its style each come with the whole policy, once.
void expect_web_headers(const HttpResult& r, std::string_view path) {
  SCOPED_TRACE(std::string(path));
  ASSERT_EQ(r.status, 200) << r.body << r.error;
  auto policies = r.header_values("Content-Security-Policy");
  ASSERT_EQ(policies.size(), 1u) << "one policy, not several to intersect";
  const std::string& csp = policies.front();
  for (std::string_view directive : {"default-src 'none'", "script-src 'self'", "style-src 'self'",
                                     "connect-src 'self'", "base-uri 'none'", "form-action 'self'",
                                     "frame-ancestors 'none'"}) {
    EXPECT_NE(csp.find(directive), std::string::npos) << "no `" << directive << "` in " << csp;
  }
  for (std::string_view loophole : {"unsafe-inline", "unsafe-eval", "sha256-", "nonce-", "*"}) {
    EXPECT_EQ(csp.find(loophole), std::string::npos) << "`" << loophole << "` in " << csp;
  }
  EXPECT_EQ(r.header("X-Content-Type-Options"), "nosniff");
  EXPECT_EQ(r.header("Referrer-Policy"), "no-referrer");
  EXPECT_EQ(r.header("X-Frame-Options"), "DENY");
}

TEST_F(WebPage, PageScriptAndStyleCarryAPolicyWithNothingInline) {
  auto page = server_.http().get("/");
  expect_web_headers(page, "/");
  EXPECT_EQ(page.header("Content-Type"), "text/html; charset=utf-8");
  auto script = server_.http().get("/app.js");
  expect_web_headers(script, "/app.js");
  EXPECT_EQ(script.header("Content-Type"), "text/javascript; charset=utf-8");
  auto style = server_.http().get("/app.css");
  expect_web_headers(style, "/app.css");
  EXPECT_EQ(style.header("Content-Type"), "text/css; charset=utf-8");

  // Nothing the policy would have to allow inline: every <script> has a src and no body, no
  // on…= handler attributes, no style attributes or <style> elements.
  const std::string& html = page.body;
  std::regex script_tag(R"(<script\b([^>]*)>([\s\S]*?)</script\s*>)", std::regex::icase);
  int scripts = 0;
  for (auto it = std::sregex_iterator(html.begin(), html.end(), script_tag); it != std::sregex_iterator(); ++it) {
    ++scripts;
    EXPECT_NE((*it)[1].str().find("src="), std::string::npos) << "a <script> without src: " << it->str();
    EXPECT_TRUE(std::regex_match((*it)[2].str(), std::regex(R"(\s*)"))) << "an inline script: " << it->str();
  }
  EXPECT_EQ(scripts, 1) << "the page loads /app.js";
  EXPECT_NE(html.find(R"(src="/app.js")"), std::string::npos);
  std::smatch m;
  EXPECT_FALSE(std::regex_search(html, m, std::regex(R"(<[^>]*\son[a-z]+\s*=)", std::regex::icase)))
      << "an inline event handler: " << m.str();
  EXPECT_FALSE(std::regex_search(html, m, std::regex(R"(<[^>]*\sstyle\s*=|<style\b)", std::regex::icase)))
      << "inline style: " << m.str();
  // The script puts data into the page as text only. (The bundle holds Preact, whose support for
  // dangerouslySetInnerHTML names innerHTML; that the app's own sources never use it is checked by
  // web/test/app.test.mjs.)
  for (std::string_view sink : {"outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"}) {
    EXPECT_EQ(script.body.find(sink), std::string::npos) << "app.js uses " << sink;
  }
}

TEST_F(WebPage, EveryReplyForbidsTypeSniffing) {
  auto ok = server_.http().get("/healthz");
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.header("X-Content-Type-Options"), "nosniff");
  auto missing = server_.http().get("/no/such/page");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.header("X-Content-Type-Options"), "nosniff");
  auto unauthorized = server_.http().get("/api/v1/conversations");
  EXPECT_EQ(unauthorized.status, 401);
  EXPECT_EQ(unauthorized.header("X-Content-Type-Options"), "nosniff");
}

// ---- the page in a browser ------------------------------------------------------------------------

// Headless Chromium with a fresh profile and the DevTools protocol on a free port (which it writes
// to <profile>/DevToolsActivePort); its stderr goes to <profile>/chromium.log.
class Chromium {
 public:
  Chromium() {
    std::string cmd = fmt::format(
        "exec '{}' --headless --no-sandbox --disable-gpu --disable-background-networking "
        "--disable-component-update --disable-sync --no-first-run --user-data-dir='{}' "
        "--remote-debugging-port=0 about:blank >'{}' 2>&1",
        kChromium, profile_.str(), log_path());
    proc_.emplace(Subprocess::start({"/bin/sh", "-c", cmd}));
  }
  ~Chromium() {
    if (!proc_) return;
    proc_->signal(SIGTERM);
    if (!proc_->wait(10s)) proc_->kill();
    // Its helpers (zygote, renderers, the crash handler) may still write to the profile for a
    // moment after the browser is gone, and a file made during TempDir's removal left the profile
    // behind in /tmp: remove it here until it stays removed.
    wait_until([&] {
      std::error_code ec;
      std::filesystem::remove_all(profile_.path(), ec);
      std::this_thread::sleep_for(200ms);
      return !std::filesystem::exists(profile_.path());
    }, 10s);
  }

  // "port path" of the browser's DevTools endpoint, once Chromium wrote it; nullopt on time-out.
  std::optional<std::pair<int, std::string>> endpoint() const {
    std::optional<std::pair<int, std::string>> out;
    wait_until([&] {
      std::ifstream in(profile_.path() / "DevToolsActivePort");
      std::string port, path;
      if (!std::getline(in, port) || !std::getline(in, path) || port.empty() || path.empty()) return false;
      out.emplace(std::stoi(port), path);
      return true;
    }, 30s);
    return out;
  }
  [[nodiscard]] std::string log() const {
    std::ifstream in(log_path());
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

 private:
  [[nodiscard]] std::string log_path() const { return profile_.str() + "/chromium.log"; }
  TempDir profile_{"imlog-chromium"};
  std::optional<Subprocess> proc_;  // after profile_: stops before the profile is removed
};

// One page of the browser over the DevTools protocol: commands by id, the page's session by
// sessionId (Target.attachToTarget with flatten). Throws std::runtime_error naming what failed.
class DevToolsPage {
 public:
  DevToolsPage(int port, const std::string& path) {
    std::string error;
    ws_ = WsClient::connect("127.0.0.1", port, path, {}, nullptr, &error);
    if (!ws_) throw std::runtime_error("cannot connect to Chromium's DevTools: " + error);
    auto target = call("Target.createTarget", R"({"url":"about:blank"})");
    auto attached = call("Target.attachToTarget",
                         fmt::format(R"({{"targetId":{},"flatten":true}})", to_json(target["targetId"])));
    session_ = attached["sessionId"].GetString();
  }

  // method(params) to the page (to the browser until the page is attached); the reply's result.
  rapidjson::Document call(std::string_view method, std::string_view params = "{}") {
    ws_->take_all("");  // events nobody waits for
    int id = ++next_id_;
    std::string session = session_.empty() ? "" : fmt::format(R"(,"sessionId":{})", json_quote(session_));
    ws_->send_text(fmt::format(R"({{"id":{},"method":{},"params":{}{}}})", id, json_quote(method), params, session));
    auto reply = ws_->wait_for("", kPageWait, [id](const Frame& f) {
      if (!f.doc.IsObject()) return false;
      auto it = f.doc.FindMember("id");
      return it != f.doc.MemberEnd() && it->value.IsInt() && it->value.GetInt() == id;
    });
    if (!reply) throw std::runtime_error(std::string(method) + ": no answer from Chromium");
    if (!reply->doc.HasMember("result")) throw std::runtime_error(std::string(method) + ": " + reply->raw);
    rapidjson::Document result;
    result.CopyFrom(reply->doc["result"], result.GetAllocator());
    return result;
  }

  // A JavaScript expression's value in the page: a string as itself, anything else as JSON.
  std::string eval(const std::string& expression) {
    auto r = call("Runtime.evaluate", fmt::format(R"({{"expression":{},"returnByValue":true,"awaitPromise":true}})",
                                                  json_quote(expression)));
    if (r.HasMember("exceptionDetails")) throw std::runtime_error(expression + " threw: " + to_json(r["exceptionDetails"]));
    const auto& v = r["result"];
    if (!v.HasMember("value")) return "undefined";
    return v["value"].IsString() ? v["value"].GetString() : to_json(v["value"]);
  }
  // Waits until `condition` (JavaScript) is true in the page; while it throws (the page is still
  // loading, or between documents) it counts as false.
  bool wait_for(const std::string& condition) {
    return wait_until([&] {
      try {
        return eval("Boolean(" + condition + ")") == "true";
      } catch (const std::runtime_error&) {
        return false;
      }
    }, kPageWait);
  }

 private:
  std::unique_ptr<WsClient> ws_;
  std::string session_;
  int next_id_ = 0;
};

// Before the page's own script runs: record every Content-Security-Policy violation (an inline
// handler the policy blocked, or anything of the page's own the policy would break).
constexpr std::string_view kWatchViolations = R"(
  window.__violations = [];
  document.addEventListener("securitypolicyviolation",
      (e) => window.__violations.push(e.effectiveDirective + " " + e.blockedURI));
)";

// A JavaScript string literal of `s`.
std::string js(const std::string& s) { return json_quote(s); }

TEST_F(WebPage, HostileNamesShowAsTextInChromiumAndRunNothing) {
  ASSERT_TRUE(std::filesystem::exists(kChromium)) << kChromium << " is missing: run scripts/setup";
  // Alice is in a group named like markup, and Mallory (nickname like markup) wrote to her.
  User alice = make_user(server_, "alice", "Alice");
  User mallory = make_user(server_, "mallory", kNickname);
  ASSERT_FALSE(alice.token.empty() || mallory.token.empty());
  auto group = server_.http().post(
      "/api/v1/groups", fmt::format(R"({{"name":{},"members":[{}]}})", json_quote(kGroupName), mallory.id), alice.token);
  ASSERT_EQ(group.status, 201) << group.body;
  const std::string chat = single(alice.id, mallory.id);
  auto sent = server_.http().post(fmt::format("/api/v1/conversations/{}/messages", chat),
                                  fmt::format(R"({{"client_msg_id":"m1","content":{}}})", json_quote(kMessage)),
                                  mallory.token);
  ASSERT_EQ(sent.status, 201) << sent.body;

  Chromium chromium;
  auto endpoint = chromium.endpoint();
  ASSERT_TRUE(endpoint) << "Chromium wrote no DevToolsActivePort within 30 s; its log:\n" << chromium.log();
  DevToolsPage page(endpoint->first, endpoint->second);
  page.call("Page.enable");
  page.call("Page.addScriptToEvaluateOnNewDocument",
            fmt::format(R"({{"source":{}}})", json_quote(kWatchViolations)));
  page.call("Page.navigate", fmt::format(R"({{"url":"http://127.0.0.1:{}/"}})", server_.port()));
  ASSERT_TRUE(page.wait_for("document.readyState === 'complete' && document.getElementById('auth-submit')"))
      << "/app.js did not run; violations: " << page.eval("window.__violations.join('; ')");

  // Sign in through the page's own form.
  page.eval(fmt::format("document.getElementById('auth-username').value = {}; "
                        "document.getElementById('auth-password').value = {}; "
                        "document.getElementById('auth-submit').click()",
                        js(alice.name), js(std::string(kPassword))));
  ASSERT_TRUE(page.wait_for(fmt::format("document.getElementById('conversations')?.textContent.includes({}) && "
                                        "document.getElementById('conversations').textContent.includes({})",
                                        js(kGroupName), js(kNickname))))
      << "the conversations did not show both names as text; #convs holds: "
      << page.eval("document.getElementById('conversations')?.innerHTML") << "; #auth-error: "
      << page.eval("document.getElementById('auth-error')?.textContent")
      << "; title: " << page.eval("document.title");

  // Open Mallory's conversation: her message shows as its characters too.
  page.eval(fmt::format("[...document.querySelectorAll('#conversations .conv')].find((d) => d.textContent.includes({})).click()",
                        js(kNickname)));
  ASSERT_TRUE(page.wait_for(fmt::format("document.getElementById('messages')?.textContent.includes({})", js(kMessage))))
      << "#messages holds: " << page.eval("document.getElementById('messages')?.innerHTML");

  // Answer through the page: the WebSocket works under the policy (connect-src 'self').
  ASSERT_TRUE(page.wait_for("document.getElementById('conn')?.dataset.state === 'open'"))
      << "the page's WebSocket did not open; violations: " << page.eval("window.__violations.join('; ')");
  page.eval("{ const t = document.getElementById('composer-input'); t.value = 'hello from the page'; "
            "t.dispatchEvent(new Event('input', {bubbles: true})); }");
  ASSERT_TRUE(page.wait_for("!document.getElementById('composer-send').disabled"));
  page.eval("document.getElementById('composer-send').click()");
  EXPECT_TRUE(page.wait_for("document.querySelector('#messages .msg.mine[data-state=acked]')?.textContent.includes('hello from the page')"))
      << "#messages holds: " << page.eval("document.getElementById('messages').textContent");
  EXPECT_TRUE(wait_until([&] {
    auto h = server_.http().get(fmt::format("/api/v1/conversations/{}/messages?limit=50", chat), mallory.token);
    return h.body.find("hello from the page") != std::string::npos;
  }, kPageWait)) << "the message sent from the page did not reach the log";

  // Nothing ran and nothing was parsed as markup: no title change, no <img>, no <b>, no fetch of
  // the names' src=x, and the page itself broke no rule of its policy.
  EXPECT_EQ(page.eval("document.title"), "imlog");
  EXPECT_EQ(page.eval("document.querySelectorAll('img, #conversations b, #messages b').length"), "0")
      << page.eval("document.body.innerHTML");
  EXPECT_EQ(page.eval("performance.getEntriesByType('resource').filter((e) => e.name.endsWith('/x')).length"), "0");
  EXPECT_EQ(page.eval("window.__violations.join('; ')"), "");

  // And the policy is in force: a script element injected into the page does not run.
  page.eval("{ const s = document.createElement('script'); s.textContent = \"document.title = 'inline ran'\"; "
            "document.body.append(s); }");
  EXPECT_TRUE(page.wait_for("window.__violations.some((v) => v.startsWith('script-src'))"))
      << "no violation reported for an inline script; violations: " << page.eval("window.__violations.join('; ')");
  EXPECT_EQ(page.eval("document.title"), "imlog");
}

}  // namespace
}  // namespace imlog::testing
