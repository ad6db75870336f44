// The REST contract (docs/api/openapi.yaml) against the router: every route is documented with
// its method, every documented operation is routed, has a unique operationId, and an operation
// that needs a token documents the 401 the router answers without one.
#include <set>
#include <string>

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "api.h"

namespace imlog::gw {
namespace {

ApiRouter real_router() {
  ApiRouter r;
  add_auth_routes(r);
  add_chat_routes(r);
  add_user_routes(r);
  add_ops_routes(r);
  return r;
}

// "/groups/{group_id}/members" → "/groups/{}/members", the router's own spelling.
std::string router_pattern(const std::string& spec_path) {
  std::string out;
  for (size_t i = 0; i < spec_path.size(); ++i) {
    if (spec_path[i] != '{') {
      out += spec_path[i];
      continue;
    }
    out += "{}";
    i = spec_path.find('}', i);
  }
  return out;
}

std::string route_key(Method m, const std::vector<std::string>& segments) {
  std::string path;
  for (const auto& s : segments) path += "/" + s;
  return std::string(method_name(m)) + " " + (path.empty() ? "/" : path);
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

class Contract : public ::testing::Test {
 protected:
  YAML::Node spec_ = YAML::LoadFile(IMLOG_OPENAPI_YAML);
  ApiRouter router_ = real_router();
};

TEST_F(Contract, EveryRouteIsDocumentedAndEveryOperationRouted) {
  std::set<std::string> documented;
  for (const auto& path : spec_["paths"]) {
    for (const auto& op : path.second) {
      std::string method = op.first.as<std::string>();
      if (method == "parameters") continue;
      std::string key = [&] {
        std::string upper;
        for (char c : method) upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        return upper + " " + router_pattern(path.first.as<std::string>());
      }();
      documented.insert(key);
    }
  }
  std::set<std::string> routed;
  for (const auto& r : router_.routes()) {
    std::string key = route_key(r.method, r.segments);
    if (key == "GET /ws") continue;  // the WebSocket upgrade: docs/api/websocket.md
    routed.insert(key);
    EXPECT_TRUE(documented.contains(key)) << key << " is routed but not in openapi.yaml";
  }
  for (const auto& key : documented) EXPECT_TRUE(routed.contains(key)) << key << " is documented but not routed";
}

TEST_F(Contract, EveryOperationHasAUniqueOperationIdAndDocuments401WhenItNeedsAToken) {
  std::set<std::string> ids;
  size_t operations = 0;
  for (const auto& path : spec_["paths"]) {
    for (const auto& op : path.second) {
      std::string method = op.first.as<std::string>();
      if (method == "parameters") continue;
      ++operations;
      std::string where = method + " " + path.first.as<std::string>();
      ASSERT_TRUE(op.second["operationId"]) << where << " has no operationId";
      EXPECT_TRUE(ids.insert(op.second["operationId"].as<std::string>()).second)
          << where << ": operationId " << op.second["operationId"].as<std::string>() << " is used twice";
      auto m = router_.match(method == "get"      ? Method::get
                             : method == "post"   ? Method::post
                             : method == "put"    ? Method::put
                             : method == "patch"  ? Method::patch
                             : method == "delete" ? Method::del
                                                  : Method::other,
                             path.first.as<std::string>());
      ASSERT_NE(m.route, nullptr) << where;
      if (m.route->auth == ApiRouter::Auth::access) {
        EXPECT_TRUE(op.second["responses"]["401"]) << where << " needs a token but does not document 401";
        EXPECT_FALSE(op.second["security"] && op.second["security"].size() == 0)
            << where << " needs a token but says security: []";
      } else {
        EXPECT_TRUE(op.second["security"] && op.second["security"].size() == 0)
            << where << " needs no token but inherits the bearer requirement";
      }
    }
  }
  EXPECT_EQ(ids.size(), operations);
  EXPECT_EQ(lower(spec_["openapi"].as<std::string>()).substr(0, 4), "3.0.");
}

}  // namespace
}  // namespace imlog::gw
