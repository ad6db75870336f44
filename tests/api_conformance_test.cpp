// The REST contract against the running server: real requests to a real `imlog serve` for every
// operation of docs/api/openapi.yaml — its success and the errors a client can provoke — each
// answer's status checked to be one the operation documents, and its JSON body validated against
// the documented schema (yaml-cpp reads the spec, RapidJSON's JSON Schema validator checks
// bodies; `$ref`s resolve within the spec, OpenAPI's `nullable` becomes a "null" type).
//
// One test, one server: the operations build on each other (users, a group, a friendship), and at
// the end every operation must have been answered with its documented success status. The
// documented statuses no request here provokes (mostly 503 and 504: a log or read store down, an
// engine that does not answer in time) are listed in the output.

#include <sodium.h>

#include <gtest/gtest.h>
#include <rapidjson/pointer.h>
#include <rapidjson/schema.h>
#include <rapidjson/stringbuffer.h>
#include <yaml-cpp/yaml.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "imlog/testing/client.h"
#include "imlog/testing/imlog_server.h"
#include "imlog/testing/support.h"

namespace imlog::testing {
namespace {

constexpr std::string_view kConfig = R"(
log: {level: warn}
gateway:
  password_ops_limit: 1
  password_mem_limit: 8KiB
  max_body_bytes: 16KiB
  avatar_max_bytes: 4KiB
  avatar_upload_interval: 1h
  read_model_wait: 5s
  login_throttle:
    account_address_failures: 2
    address_failures: 4
    first_backoff: 1m
)";

// A YAML scalar as JSON: plain scalars that read as null, booleans or numbers become those;
// quoted ones and everything else stay strings.
void to_json(const YAML::Node& n, rapidjson::Value& out, rapidjson::Document::AllocatorType& a) {
  switch (n.Type()) {
    case YAML::NodeType::Map: {
      out.SetObject();
      for (const auto& kv : n) {
        rapidjson::Value k(kv.first.as<std::string>().c_str(), a), v;
        to_json(kv.second, v, a);
        out.AddMember(k, v, a);
      }
      // OpenAPI 3.0's `nullable: true` is JSON Schema's "null" among the types.
      auto nullable = out.FindMember("nullable");
      auto type = out.FindMember("type");
      if (nullable != out.MemberEnd() && nullable->value.IsBool() && nullable->value.GetBool() &&
          type != out.MemberEnd() && type->value.IsString()) {
        rapidjson::Value types(rapidjson::kArrayType);
        types.PushBack(rapidjson::Value(type->value, a), a).PushBack("null", a);
        type->value = types;
      }
      return;
    }
    case YAML::NodeType::Sequence:
      out.SetArray();
      for (const auto& item : n) {
        rapidjson::Value v;
        to_json(item, v, a);
        out.PushBack(v, a);
      }
      return;
    case YAML::NodeType::Scalar: {
      const std::string& s = n.Scalar();
      if (n.Tag() == "?") {
        static const std::regex integer("-?[0-9]+"), number("-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?");
        if (s == "null" || s == "~") return out.SetNull(), void();
        if (s == "true" || s == "false") return out.SetBool(s == "true"), void();
        if (std::regex_match(s, integer)) return out.SetInt64(std::stoll(s)), void();
        if (std::regex_match(s, number)) return out.SetDouble(std::stod(s)), void();
      }
      out.SetString(s.c_str(), a);
      return;
    }
    default:
      out.SetNull();
  }
}

// The spec, and what the test provoked of it.
class Spec {
 public:
  explicit Spec(const char* path) {
    YAML::Node yaml = YAML::LoadFile(path);
    to_json(yaml, doc_, doc_.GetAllocator());
    for (auto& path_item : doc_["paths"].GetObject()) {
      for (auto& op : path_item.value.GetObject()) {
        if (!op.value.IsObject() || !op.value.HasMember("operationId")) continue;
        Operation o;
        o.method = op.name.GetString();
        for (auto& c : o.method) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        o.path = path_item.name.GetString();
        o.spec = &op.value;
        ops_.emplace(op.value["operationId"].GetString(), std::move(o));
      }
    }
  }

  struct Operation {
    std::string method, path;
    const rapidjson::Value* spec = nullptr;
  };

  [[nodiscard]] const Operation* find(const std::string& id) const {
    auto it = ops_.find(id);
    return it == ops_.end() ? nullptr : &it->second;
  }
  [[nodiscard]] const std::map<std::string, Operation>& operations() const { return ops_; }

  // "" when `r` is an answer `id` documents: its status is listed, and a JSON body conforms to
  // the schema documented for that status; otherwise what is wrong.
  std::string check(const std::string& id, const HttpResult& r) {
    const Operation& op = ops_.at(id);
    std::string status = std::to_string(r.status);
    const auto& responses = (*op.spec)["responses"];
    if (!responses.HasMember(status.c_str())) return "status " + status + " is not documented";
    covered_[id].insert(status);
    const rapidjson::Value* response = &responses[status.c_str()];
    if (response->HasMember("$ref")) response = resolve((*response)["$ref"].GetString());
    if (!response) return "unresolvable response $ref";
    auto content = response->FindMember("content");
    if (content == response->MemberEnd()) {
      if (!r.body.empty()) return "status " + status + " documents no body, but one came: " + r.body.substr(0, 200);
      return {};
    }
    auto json = content->value.FindMember("application/json");
    if (json == content->value.MemberEnd()) return {};  // text, HTML, an image: not JSON
    if (r.header("Content-Type").rfind("application/json", 0) != 0) {
      return "documented as JSON, served as " + r.header("Content-Type");
    }
    rapidjson::Document body;
    body.Parse(r.body.data(), r.body.size());
    if (body.HasParseError()) return "the body is not JSON: " + r.body.substr(0, 200);
    auto schema = json->value.FindMember("schema");
    if (schema == json->value.MemberEnd()) return {};
    // The schema as a document of its own, with the spec's components beside it so that its
    // "#/components/..." references resolve.
    rapidjson::Document sd;
    sd.CopyFrom(schema->value, sd.GetAllocator());
    if (sd.IsObject() && !sd.HasMember("components")) {
      sd.AddMember("components", rapidjson::Value(doc_["components"], sd.GetAllocator()), sd.GetAllocator());
    }
    rapidjson::SchemaDocument compiled(sd);
    rapidjson::SchemaValidator v(compiled);
    if (body.Accept(v)) return {};
    rapidjson::StringBuffer where, rule;
    v.GetInvalidDocumentPointer().StringifyUriFragment(where);
    v.GetInvalidSchemaPointer().StringifyUriFragment(rule);
    return fmt::format("status {}: the body fails '{}' of {} at {}: {}", status, v.GetInvalidSchemaKeyword(),
                       rule.GetString(), where.GetString(), r.body.substr(0, 300));
  }

  [[nodiscard]] const std::map<std::string, std::set<std::string>>& covered() const { return covered_; }

 private:
  const rapidjson::Value* resolve(const std::string& ref) const {
    if (ref.rfind("#/", 0) != 0) return nullptr;
    return rapidjson::Pointer(ref.substr(1).c_str()).Get(doc_);
  }

  rapidjson::Document doc_;
  std::map<std::string, Operation> ops_;
  std::map<std::string, std::set<std::string>> covered_;
};

struct User {
  std::string name;
  uint64_t id = 0;
  std::string token, refresh;
};

class Conformance : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_GE(sodium_init(), 0);
    ASSERT_TRUE(server_.start()) << "imlog did not become ready on port " << server_.port();
  }

  // Calls operation `id` with `params` filled into its path ("{group_id}" → …), `query` appended,
  // `body` sent; expects `want` and an answer the spec documents.
  HttpResult call(const std::string& id, int want, const std::map<std::string, std::string>& params = {},
                  std::string_view body = {}, std::string_view token = {}, const std::string& query = {}) {
    const auto* op = spec_.find(id);
    EXPECT_NE(op, nullptr) << id << " is not an operationId of the spec";
    if (!op) return {};
    std::string path = op->path;
    for (const auto& [k, v] : params) {
      auto at = path.find("{" + k + "}");
      EXPECT_NE(at, std::string::npos) << id << " has no path parameter " << k;
      if (at != std::string::npos) path.replace(at, k.size() + 2, v);
    }
    EXPECT_EQ(path.find('{'), std::string::npos) << id << ": unfilled path parameter in " << path;
    if (!query.empty()) path += "?" + query;
    // From another loopback address when `source_` says so: the login throttle counts by address.
    auto r = HttpClient("127.0.0.1", port_ ? port_ : server_.port(), source_).request(op->method, path, body, token);
    EXPECT_EQ(r.status, want) << op->method << " " << path << " (" << id << "): " << r.body << r.error;
    if (r.status != 0) {
      auto why = spec_.check(id, r);
      EXPECT_EQ(why, "") << op->method << " " << path << " (" << id << ")";
    }
    return r;
  }

  User make_user(std::string_view base) {
    static std::atomic<int> n{0};
    User u;
    u.name = fmt::format("{}_{}_{}", base, ::getpid() % 100000, n++);
    auto reg = call("register", 201, {}, fmt::format(R"({{"username":{},"password":"correct horse"}})", json_quote(u.name)));
    if (reg.status != 201) return u;
    u.id = reg.json()["user_id"].GetUint64();
    auto login = call("login", 200, {}, fmt::format(R"({{"username":{},"password":"correct horse"}})", json_quote(u.name)));
    if (login.status != 200) return u;
    u.token = login.json()["access_token"].GetString();
    u.refresh = login.json()["refresh_token"].GetString();
    return u;
  }

  // Calls `id` until it answers `want` (the read models follow the log a moment behind a write).
  HttpResult eventually(const std::string& id, int want, const std::map<std::string, std::string>& params,
                        std::string_view token, const std::string& query,
                        const std::function<bool(const HttpResult&)>& done) {
    const auto* op = spec_.find(id);
    std::string path = op->path;
    for (const auto& [k, v] : params) path.replace(path.find("{" + k + "}"), k.size() + 2, v);
    if (!query.empty()) path += "?" + query;
    HttpResult r;
    for (int i = 0; i < 200; ++i) {
      r = server_.http().request(op->method, path, {}, token);
      if (r.status == want && done(r)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    return call(id, want, params, {}, token, query);
  }

  std::string source_;  // the local address requests come from ("": any)
  int port_ = 0;        // another server's port, when not 0
  TempDir dir_{"imlog-conformance"};
  ImlogServer server_{dir_.str(), kConfig};
  Spec spec_{IMLOG_OPENAPI_YAML};
};

std::string id(uint64_t v) { return std::to_string(v); }
std::string single(uint64_t a, uint64_t b) { return fmt::format("single_{}_{}", std::min(a, b), std::max(a, b)); }

TEST_F(Conformance, EveryOperationAnswersAsTheSpecSays) {
  const std::string big(20 * 1024, 'x');
  const std::string too_big = fmt::format(R"({{"pad":"{}"}})", big);
  const std::string junk = "{not json";

  // --- auth -------------------------------------------------------------------------------
  User a = make_user("conf_a"), b = make_user("conf_b"), c = make_user("conf_c"), d = make_user("conf_d");
  ASSERT_FALSE(a.token.empty() || b.token.empty() || c.token.empty() || d.token.empty());
  call("register", 409, {}, fmt::format(R"({{"username":{},"password":"another one"}})", json_quote(a.name)));
  call("register", 400, {}, R"({"username":"x","password":"short"})");
  call("register", 400, {}, junk);
  call("register", 413, {}, too_big);
  call("login", 401, {}, fmt::format(R"({{"username":{},"password":"wrong password"}})", json_quote(a.name)));
  call("login", 400, {}, R"({"username":"nobody"})");
  call("login", 413, {}, too_big);
  auto refreshed = call("refreshTokens", 200, {}, fmt::format(R"({{"refresh_token":{}}})", json_quote(a.refresh)));
  ASSERT_EQ(refreshed.status, 200);
  std::string a_refresh = refreshed.json()["refresh_token"].GetString();
  call("refreshTokens", 401, {}, fmt::format(R"({{"refresh_token":{}}})", json_quote(a.refresh)));  // used once already
  call("refreshTokens", 400, {}, R"({})");
  call("refreshTokens", 413, {}, too_big);
  call("logout", 204, {}, fmt::format(R"({{"refresh_token":{}}})", json_quote(a_refresh)), a.token);
  call("logout", 401, {}, R"({"refresh_token":"not.a.token"})");
  call("logout", 400, {}, junk, a.token);
  call("logout", 413, {}, too_big, a.token);

  // --- friends and blocks -----------------------------------------------------------------
  call("requestFriend", 204, {}, fmt::format(R"({{"user_id":{},"note":"hi"}})", b.id), a.token);
  call("requestFriend", 409, {}, fmt::format(R"({{"user_id":{}}})", b.id), a.token);
  call("requestFriend", 404, {}, R"({"user_id":999999999})", a.token);
  call("requestFriend", 400, {}, R"({"user_id":"b"})", a.token);
  call("requestFriend", 401, {}, fmt::format(R"({{"user_id":{}}})", b.id));
  call("requestFriend", 413, {}, too_big, a.token);
  call("acceptFriend", 204, {{"user_id", id(a.id)}}, {}, b.token);
  call("acceptFriend", 404, {{"user_id", id(c.id)}}, {}, b.token);
  call("acceptFriend", 404, {{"user_id", "abc"}}, {}, b.token);
  call("acceptFriend", 401, {{"user_id", id(a.id)}});
  call("requestFriend", 204, {}, fmt::format(R"({{"user_id":{}}})", a.id), c.token);
  call("rejectFriend", 204, {{"user_id", id(c.id)}}, {}, a.token);
  call("rejectFriend", 404, {{"user_id", id(c.id)}}, {}, a.token);
  call("rejectFriend", 404, {{"user_id", "abc"}}, {}, a.token);
  call("rejectFriend", 401, {{"user_id", id(c.id)}});
  eventually("listFriends", 200, {}, a.token, {}, [&](const HttpResult& r) { return r.body.find(id(b.id)) != std::string::npos; });
  call("listFriends", 400, {}, {}, a.token, "status=sideways");
  call("listFriends", 401);
  call("setFriendGroup", 204, {{"user_id", id(b.id)}}, R"({"group_name":"work"})", a.token);
  call("setFriendGroup", 400, {{"user_id", id(b.id)}}, R"({})", a.token);
  call("setFriendGroup", 401, {{"user_id", id(b.id)}}, R"({"group_name":"work"})");
  call("setFriendGroup", 413, {{"user_id", id(b.id)}}, too_big, a.token);
  eventually("listFriendGroups", 200, {}, a.token, {}, [](const HttpResult& r) { return r.body.find("work") != std::string::npos; });
  call("listFriendGroups", 401);
  call("blockUser", 204, {}, fmt::format(R"({{"user_id":{}}})", d.id), a.token);
  call("blockUser", 400, {}, R"({})", a.token);
  call("blockUser", 401, {}, fmt::format(R"({{"user_id":{}}})", d.id));
  call("blockUser", 413, {}, too_big, a.token);
  call("requestFriend", 403, {}, fmt::format(R"({{"user_id":{}}})", a.id), d.token);  // blocked by a
  eventually("listBlocks", 200, {}, a.token, {}, [&](const HttpResult& r) { return r.body.find(id(d.id)) != std::string::npos; });
  call("listBlocks", 401);
  call("unblockUser", 204, {{"user_id", id(d.id)}}, {}, a.token);
  call("unblockUser", 404, {{"user_id", id(d.id)}}, {}, a.token);
  call("unblockUser", 404, {{"user_id", "abc"}}, {}, a.token);
  call("unblockUser", 401, {{"user_id", id(d.id)}});

  // --- one-to-one messages ----------------------------------------------------------------
  const std::string ab = single(a.id, b.id), cd = single(c.id, d.id);
  auto sent = call("sendMessage", 201, {{"conversation_id", ab}}, R"({"content":"hello","client_msg_id":"conf-1"})", a.token);
  ASSERT_EQ(sent.status, 201);
  std::string message_id = sent.json()["message_id"].GetString();
  uint64_t seq = sent.json()["seq_id"].GetUint64();
  call("sendMessage", 403, {{"conversation_id", cd}}, R"({"content":"intrude"})", a.token);
  call("sendMessage", 400, {{"conversation_id", ab}}, R"({"content":7})", a.token);
  call("sendMessage", 401, {{"conversation_id", ab}}, R"({"content":"hi"})");
  call("sendMessage", 413, {{"conversation_id", ab}}, too_big, a.token);
  eventually("getHistory", 200, {{"conversation_id", ab}}, b.token, "after_seq=0",
             [&](const HttpResult& r) { return r.body.find(message_id) != std::string::npos; });
  eventually("searchMessages", 200, {}, b.token, "q=HELLO&limit=5",
             [&](const HttpResult& r) { return r.body.find(message_id) != std::string::npos; });
  call("searchMessages", 400, {}, {}, b.token, "q=a");
  call("searchMessages", 403, {}, {}, b.token, "q=hello&conversation_id=" + cd);
  call("searchMessages", 401, {}, {}, {}, "q=hello");
  call("getHistory", 400, {{"conversation_id", ab}}, {}, b.token, "limit=500");
  call("getHistory", 403, {{"conversation_id", cd}}, {}, b.token);
  call("getHistory", 401, {{"conversation_id", ab}});
  call("markRead", 204, {{"conversation_id", ab}}, fmt::format(R"({{"seq_id":{}}})", seq), b.token);
  call("markRead", 400, {{"conversation_id", ab}}, R"({"seq_id":"one"})", b.token);
  call("markRead", 403, {{"conversation_id", cd}}, R"({"seq_id":1})", b.token);
  call("markRead", 401, {{"conversation_id", ab}}, R"({"seq_id":1})");
  call("markRead", 413, {{"conversation_id", ab}}, too_big, b.token);
  eventually("listConversations", 200, {}, b.token, {}, [&](const HttpResult& r) { return r.body.find(ab) != std::string::npos; });
  call("listConversations", 401);
  call("recallMessage", 403, {{"conversation_id", ab}, {"message_id", message_id}}, {}, b.token);  // not the sender
  call("recallMessage", 204, {{"conversation_id", ab}, {"message_id", message_id}}, {}, a.token);
  // An id of this moment that no message has (message ids grow with time; an old one is past the
  // recall window, 409).
  call("recallMessage", 404, {{"conversation_id", ab}, {"message_id", id(std::stoull(message_id) + 1)}}, {}, a.token);
  call("recallMessage", 409, {{"conversation_id", ab}, {"message_id", "12345"}}, {}, a.token);
  call("recallMessage", 400, {{"conversation_id", ab}, {"message_id", "abc"}}, {}, a.token);
  call("recallMessage", 401, {{"conversation_id", ab}, {"message_id", message_id}});

  // --- groups -----------------------------------------------------------------------------
  auto group = call("createGroup", 201, {}, fmt::format(R"({{"name":"conf","members":[{}]}})", b.id), a.token);
  ASSERT_EQ(group.status, 201);
  std::string g = id(group.json()["group_id"].GetUint64());
  call("createGroup", 400, {}, R"({"name":""})", a.token);
  call("createGroup", 404, {}, R"({"name":"ghosts","members":[999999999]})", a.token);
  call("createGroup", 401, {}, R"({"name":"conf"})");
  call("createGroup", 413, {}, too_big, a.token);
  eventually("getGroup", 200, {{"group_id", g}}, a.token, {}, [](const HttpResult&) { return true; });
  call("getGroup", 404, {{"group_id", "999999999"}}, {}, a.token);
  call("getGroup", 404, {{"group_id", "abc"}}, {}, a.token);
  call("getGroup", 401, {{"group_id", g}});
  call("changeGroupSettings", 200, {{"group_id", g}}, R"({"join_policy":"public"})", a.token);
  call("changeGroupSettings", 403, {{"group_id", g}}, R"({"history":"all"})", b.token);
  call("changeGroupSettings", 404, {{"group_id", "999999999"}}, R"({"history":"all"})", a.token);
  call("changeGroupSettings", 400, {{"group_id", g}}, R"({"join_policy":"sometimes"})", a.token);
  call("changeGroupSettings", 401, {{"group_id", g}}, R"({"history":"all"})");
  call("changeGroupSettings", 413, {{"group_id", g}}, too_big, a.token);
  const std::string gc = "group_" + g;
  call("setRetention", 200, {{"conversation_id", gc}}, R"({"keep_days":30})", a.token);
  call("setRetention", 200, {{"conversation_id", ab}}, R"({"keep":"forever"})", b.token);
  call("setRetention", 403, {{"conversation_id", gc}}, R"({"keep_days":30})", b.token);  // a member, not an admin
  call("setRetention", 404, {{"conversation_id", "group_999999999"}}, R"({"keep":"default"})", a.token);
  call("setRetention", 400, {{"conversation_id", gc}}, R"({"keep_days":0})", a.token);
  call("setRetention", 400, {{"conversation_id", "nowhere"}}, R"({"keep_days":3})", a.token);
  call("setRetention", 401, {{"conversation_id", gc}}, R"({"keep_days":3})");
  call("setRetention", 413, {{"conversation_id", gc}}, too_big, a.token);
  // Read by a member (b, not an admin) once the model shows the owner's 30; the one-to-one with
  // b's "forever" and a's default; world; someone who may not read it; bad ids.
  eventually("getRetention", 200, {{"conversation_id", gc}}, b.token, {},
             [](const HttpResult& r) { return r.body.find(R"("source":"group")") != std::string::npos; });
  eventually("getRetention", 200, {{"conversation_id", ab}}, a.token, {},
             [](const HttpResult& r) { return r.body.find(R"("keep_days":0})") != std::string::npos; });
  call("getRetention", 200, {{"conversation_id", "world"}}, {}, a.token);
  call("getRetention", 403, {{"conversation_id", cd}}, {}, b.token);
  call("getRetention", 400, {{"conversation_id", "nowhere"}}, {}, a.token);
  call("getRetention", 401, {{"conversation_id", gc}});
  call("joinGroup", 200, {{"group_id", g}}, {}, c.token);
  call("joinGroup", 409, {{"group_id", g}}, {}, c.token);
  call("joinGroup", 404, {{"group_id", "999999999"}}, {}, c.token);
  call("joinGroup", 404, {{"group_id", "abc"}}, {}, c.token);
  call("joinGroup", 401, {{"group_id", g}});
  eventually("listMembers", 200, {{"group_id", g}}, a.token, {}, [&](const HttpResult& r) { return r.body.find(id(c.id)) != std::string::npos; });
  call("listMembers", 403, {{"group_id", g}}, {}, d.token);
  call("listMembers", 400, {{"group_id", g}}, {}, a.token, "limit=0");
  call("listMembers", 401, {{"group_id", g}});
  call("addMember", 200, {{"group_id", g}}, fmt::format(R"({{"user_id":{}}})", d.id), a.token);
  call("addMember", 409, {{"group_id", g}}, fmt::format(R"({{"user_id":{}}})", d.id), a.token);
  call("addMember", 404, {{"group_id", g}}, R"({"user_id":999999999})", a.token);
  call("addMember", 400, {{"group_id", g}}, R"({})", a.token);
  call("addMember", 401, {{"group_id", g}}, fmt::format(R"({{"user_id":{}}})", d.id));
  call("addMember", 413, {{"group_id", g}}, too_big, a.token);
  call("changeRole", 204, {{"group_id", g}, {"user_id", id(b.id)}}, R"({"role":"admin"})", a.token);
  call("changeRole", 403, {{"group_id", g}, {"user_id", id(a.id)}}, R"({"role":"member"})", c.token);
  call("changeRole", 404, {{"group_id", "999999999"}, {"user_id", id(b.id)}}, R"({"role":"admin"})", a.token);
  call("changeRole", 400, {{"group_id", g}, {"user_id", id(b.id)}}, R"({"role":"king"})", a.token);
  call("changeRole", 401, {{"group_id", g}, {"user_id", id(b.id)}}, R"({"role":"admin"})");
  call("changeRole", 413, {{"group_id", g}, {"user_id", id(b.id)}}, too_big, a.token);
  call("removeMember", 204, {{"group_id", g}, {"user_id", id(d.id)}}, {}, a.token);
  call("removeMember", 403, {{"group_id", g}, {"user_id", id(b.id)}}, {}, c.token);
  call("removeMember", 400, {{"group_id", g}, {"user_id", "abc"}}, {}, a.token);
  call("removeMember", 401, {{"group_id", g}, {"user_id", id(c.id)}});
  call("joinGroup", 403, {{"group_id", g}}, {}, d.token);  // banned by the removal
  call("addMember", 403, {{"group_id", g}}, fmt::format(R"({{"user_id":{}}})", c.id), d.token);  // not a member
  eventually("listBans", 200, {{"group_id", g}}, a.token, {}, [&](const HttpResult& r) { return r.body.find(id(d.id)) != std::string::npos; });
  call("listBans", 403, {{"group_id", g}}, {}, d.token);
  call("listBans", 400, {{"group_id", g}}, {}, a.token, "limit=0");
  call("listBans", 401, {{"group_id", g}});
  call("unbanMember", 204, {{"group_id", g}, {"user_id", id(d.id)}}, {}, a.token);
  call("unbanMember", 404, {{"group_id", g}, {"user_id", id(d.id)}}, {}, a.token);
  call("unbanMember", 403, {{"group_id", g}, {"user_id", id(d.id)}}, {}, c.token);
  call("unbanMember", 400, {{"group_id", g}, {"user_id", "abc"}}, {}, a.token);
  call("unbanMember", 401, {{"group_id", g}, {"user_id", id(d.id)}});
  call("leaveGroup", 204, {{"group_id", g}}, {}, c.token);
  call("leaveGroup", 409, {{"group_id", g}}, {}, a.token);  // the owner must transfer first
  call("leaveGroup", 403, {{"group_id", g}}, {}, d.token);
  call("leaveGroup", 404, {{"group_id", "abc"}}, {}, c.token);
  call("leaveGroup", 401, {{"group_id", g}});
  call("sendMessage", 404, {{"conversation_id", "group_999999999"}}, R"({"content":"anyone?"})", a.token);

  // --- friendship ends --------------------------------------------------------------------
  call("removeFriend", 204, {{"user_id", id(b.id)}}, {}, a.token);
  call("removeFriend", 403, {{"user_id", id(c.id)}}, {}, a.token);
  call("removeFriend", 404, {{"user_id", "abc"}}, {}, a.token);
  call("removeFriend", 401, {{"user_id", id(b.id)}});

  // --- users ------------------------------------------------------------------------------
  call("updateProfile", 204, {}, R"({"nickname":"Conformant","signature":"to the letter"})", a.token);
  call("updateProfile", 400, {}, R"({"nickname":""})", a.token);
  call("updateProfile", 401, {}, R"({"nickname":"x"})");
  call("updateProfile", 413, {}, too_big, a.token);
  eventually("getMe", 200, {}, a.token, {}, [](const HttpResult& r) { return r.body.find("Conformant") != std::string::npos; });
  call("getMe", 401);
  {  // erasure, of a user of its own
    User e = make_user("conf_erased");
    call("eraseMe", 400, {}, junk, e.token);
    call("eraseMe", 401, {}, R"({"password":"not the password"})", e.token);
    call("eraseMe", 401, {}, R"({"password":"correct horse"})");
    call("eraseMe", 204, {}, R"({"password":"correct horse"})", e.token);
    call("eraseMe", 401, {}, R"({"password":"correct horse"})", e.token);  // erased: its token is refused
  }
  call("updateSettings", 204, {}, R"({"allow_search":true,"message_policy":"everyone"})", a.token);
  call("updateSettings", 400, {}, R"({"message_policy":"nobody"})", a.token);
  call("updateSettings", 401, {}, R"({"allow_search":true})");
  call("updateSettings", 413, {}, too_big, a.token);
  call("updateSettings", 204, {}, R"({"time_zone":"Europe/Paris"})", a.token);
  call("updateSettings", 400, {}, R"({"time_zone":"Nowhere/Atlantis"})", a.token);

  // --- push devices -------------------------------------------------------------------------
  auto device = call("registerDevice", 201, {}, R"({"platform":"webhook","token":"http://127.0.0.1:9/hook"})", a.token);
  ASSERT_EQ(device.status, 201);
  std::string device_id = id(device.json()["device_id"].GetUint64());
  call("registerDevice", 400, {}, R"({"platform":"pager","token":"x"})", a.token);
  call("registerDevice", 401, {}, R"({"platform":"fcm","token":"x"})");
  call("registerDevice", 413, {}, too_big, a.token);
  eventually("listDevices", 200, {}, a.token, {}, [&](const HttpResult& r) { return r.body.find(device_id) != std::string::npos; });
  call("listDevices", 401);
  call("removeDevice", 404, {{"device_id", device_id}}, {}, b.token);
  call("removeDevice", 204, {{"device_id", device_id}}, {}, a.token);
  call("removeDevice", 404, {{"device_id", device_id}}, {}, a.token);
  call("removeDevice", 401, {{"device_id", device_id}});
  eventually("searchUsers", 200, {}, b.token, "q=conf_a", [&](const HttpResult& r) { return r.body.find(id(a.id)) != std::string::npos; });
  call("searchUsers", 400, {}, {}, b.token, "q=conf_a&limit=0");
  call("searchUsers", 401, {}, {}, {}, "q=conf_a");
  call("setStatus", 200, {}, R"({"status":"away"})", a.token);
  call("setStatus", 400, {}, R"({"status":"offline"})", a.token);
  call("setStatus", 401, {}, R"({"status":"away"})");
  call("setStatus", 413, {}, too_big, a.token);
  call("getPresence", 200, {}, {}, a.token, fmt::format("ids={},{}", a.id, b.id));
  call("getPresence", 400, {}, {}, a.token, "ids=x");
  call("getPresence", 401, {}, {}, {}, "ids=1");
  call("getUser", 200, {{"user_id", id(b.id)}}, {}, a.token);
  call("getUser", 404, {{"user_id", "999999999"}}, {}, a.token);
  call("getUser", 404, {{"user_id", "abc"}}, {}, a.token);
  call("getUser", 401, {{"user_id", id(b.id)}});

  // --- avatars ----------------------------------------------------------------------------
  const std::string png = std::string("\x89PNG\r\n\x1a\n", 8) + std::string(64, '\0');
  auto avatar = call("uploadAvatar", 200, {}, png, b.token);
  call("uploadAvatar", 429, {}, png, b.token);  // one upload per avatar_upload_interval
  call("uploadAvatar", 415, {}, "plain text, not an image", c.token);
  call("uploadAvatar", 413, {}, std::string("\x89PNG\r\n\x1a\n", 8) + std::string(8 * 1024, '\0'), c.token);
  call("uploadAvatar", 401, {}, png);
  if (avatar.status == 200) {
    std::string url = avatar.json()["avatar_url"].GetString();
    call("getAvatar", 200, {{"name", url.substr(url.rfind('/') + 1)}});
  }
  call("getAvatar", 404, {{"name", std::string(64, 'a') + ".png"}});

  // --- the login throttle, from addresses of their own --------------------------------------
  source_ = "127.0.0.7";
  const auto wrong = fmt::format(R"({{"username":{},"password":"wrong password"}})", json_quote(c.name));
  call("login", 401, {}, wrong);
  call("login", 401, {}, wrong);
  auto throttled = call("login", 429, {}, wrong);
  EXPECT_FALSE(throttled.header("Retry-After").empty()) << "429 carries Retry-After";
  source_ = "127.0.0.8";
  const auto taken = fmt::format(R"({{"username":{},"password":"correct horse"}})", json_quote(c.name));
  for (int i = 0; i < 4; ++i) call("register", 409, {}, taken);
  call("register", 429, {}, taken);
  source_.clear();

  // --- operations -------------------------------------------------------------------------
  call("health", 200);
  call("readiness", 200);
  call("metrics", 200);
  call("demoPage", 200);
  call("demoScript", 200);
  call("demoStyle", 200);
  // A server that serves the demo files from a directory (gateway.web_dir): it starts only with an
  // index.html there, and answers 404 for a file that is not (or no longer) there.
  {
    const std::string web_dir = dir_.str() + "/web-server/web";
    std::filesystem::create_directories(web_dir);
    std::ofstream(web_dir + "/index.html") << "<!doctype html><html><body>conformance</body></html>\n";
    ImlogServer web(dir_.str() + "/web-server", std::string(kConfig) + "  web_dir: " + web_dir + "\n");
    ASSERT_TRUE(web.start()) << "the web_dir server did not become ready";
    port_ = web.port();
    call("demoPage", 200);
    call("demoScript", 404);
    call("demoStyle", 404);
    std::filesystem::remove(web_dir + "/index.html");
    call("demoPage", 404);
    port_ = 0;
  }

  // Every operation answered with its success; what no request here provoked, listed.
  size_t statuses = 0, provoked = 0;
  std::string missing;
  for (const auto& [op_id, op] : spec_.operations()) {
    const auto& responses = (*op.spec)["responses"];
    const auto covered = spec_.covered().contains(op_id) ? spec_.covered().at(op_id) : std::set<std::string>{};
    std::string success;
    for (const auto& r : responses.GetObject()) {
      std::string status = r.name.GetString();
      ++statuses;
      if (covered.contains(status)) {
        ++provoked;
      } else {
        missing += " " + op_id + ":" + status;
      }
      if (success.empty() && status[0] == '2') success = status;
    }
    EXPECT_TRUE(covered.contains(success)) << op_id << " was never answered with its documented " << success;
  }
  std::cout << "[ conformance ] " << spec_.operations().size() << " operations; " << provoked << " of " << statuses
            << " documented statuses provoked and checked; not provoked:" << missing << "\n";
}

}  // namespace
}  // namespace imlog::testing
