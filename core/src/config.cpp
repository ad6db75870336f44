#include "imlog/core/config.h"

#include <charconv>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

#include <yaml-cpp/yaml.h>

namespace imlog {

struct ConfigSection::State {
  YAML::Node node;
  std::string prefix;  // "" for the root, "kafka." for a section
  std::string source;  // file name, for messages
  std::set<std::string, std::less<>> used;
};

namespace {

const char* kind_of(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map: return "a map";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Scalar: return "a scalar";
    case YAML::NodeType::Null: return "nothing";
    default: return "an undefined value";
  }
}

template <class Int>
bool parse_int(const std::string& s, Int& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

ConfigSection::ConfigSection(std::unique_ptr<State> s) : s_(std::move(s)) {}
ConfigSection::ConfigSection(ConfigSection&&) noexcept = default;
ConfigSection& ConfigSection::operator=(ConfigSection&&) noexcept = default;
ConfigSection::~ConfigSection() = default;

ConfigSection ConfigSection::parse(std::string_view yaml_text, std::string source_name) {
  auto s = std::make_unique<State>();
  s->source = std::move(source_name);
  try {
    s->node = YAML::Load(std::string(yaml_text));
  } catch (const YAML::Exception& e) {
    throw ConfigError(s->source + ": not valid YAML: " + e.what());
  }
  if (s->node.IsNull() || !s->node.IsDefined()) s->node = YAML::Node(YAML::NodeType::Map);
  if (!s->node.IsMap()) {
    throw ConfigError(s->source + ": the top level must be a map of sections, got " +
                      kind_of(s->node));
  }
  return ConfigSection(std::move(s));
}

ConfigSection ConfigSection::load_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError("config file `" + path + "` cannot be read: check the path");
  std::stringstream buf;
  buf << in.rdbuf();
  return parse(buf.str(), path);
}

std::string ConfigSection::path(std::string_view key) const { return s_->prefix + std::string(key); }

void ConfigSection::fail(std::string_view key, std::string_view what) const {
  throw ConfigError(s_->source + ": config key `" + path(key) + "`: " + std::string(what));
}

bool ConfigSection::has(std::string_view key) const {
  return static_cast<bool>(s_->node[std::string(key)]);
}

ConfigSection ConfigSection::section(std::string_view key) {
  s_->used.emplace(key);
  auto s = std::make_unique<State>();
  s->prefix = path(key) + ".";
  s->source = s_->source;
  YAML::Node child = s_->node[std::string(key)];
  if (!child || child.IsNull()) {
    s->node = YAML::Node(YAML::NodeType::Map);
  } else if (!child.IsMap()) {
    fail(key, std::string("expected a map of settings, got ") + kind_of(child));
  } else {
    s->node = child;
  }
  return ConfigSection(std::move(s));
}

namespace {

// The scalar text of `key`, or nullopt when absent. Fails when present but not a scalar.
std::optional<std::string> scalar(ConfigSection& sec, const YAML::Node& node, std::string_view key) {
  YAML::Node v = node[std::string(key)];
  if (!v || v.IsNull()) return std::nullopt;
  if (!v.IsScalar()) sec.fail(key, std::string("expected a single value, got ") + kind_of(v));
  return v.Scalar();
}

}  // namespace

void ConfigSection::read(std::string_view key, std::string& out) {
  s_->used.emplace(key);
  if (auto v = scalar(*this, s_->node, key)) out = *v;
}

void ConfigSection::read(std::string_view key, bool& out) {
  s_->used.emplace(key);
  auto v = scalar(*this, s_->node, key);
  if (!v) return;
  if (*v == "true" || *v == "yes" || *v == "on") {
    out = true;
  } else if (*v == "false" || *v == "no" || *v == "off") {
    out = false;
  } else {
    fail(key, "expected true or false, got `" + *v + "`");
  }
}

void ConfigSection::read(std::string_view key, int32_t& out) {
  int64_t wide = out;
  read(key, wide);
  if (wide < INT32_MIN || wide > INT32_MAX) fail(key, "value is out of range for a 32-bit number");
  out = static_cast<int32_t>(wide);
}

void ConfigSection::read(std::string_view key, int64_t& out) {
  s_->used.emplace(key);
  auto v = scalar(*this, s_->node, key);
  if (v && !parse_int(*v, out)) fail(key, "expected a whole number, got `" + *v + "`");
}

void ConfigSection::read(std::string_view key, uint64_t& out) {
  s_->used.emplace(key);
  auto v = scalar(*this, s_->node, key);
  if (v && !parse_int(*v, out)) fail(key, "expected a non-negative whole number, got `" + *v + "`");
}

void ConfigSection::read(std::string_view key, double& out) {
  s_->used.emplace(key);
  auto v = scalar(*this, s_->node, key);
  if (!v) return;
  try {
    size_t pos = 0;
    out = std::stod(*v, &pos);
    if (pos != v->size()) throw std::invalid_argument("trailing text");
  } catch (const std::exception&) {
    fail(key, "expected a number, got `" + *v + "`");
  }
}

void ConfigSection::read(std::string_view key, std::vector<std::string>& out) {
  s_->used.emplace(key);
  YAML::Node v = s_->node[std::string(key)];
  if (!v || v.IsNull()) return;
  if (v.IsScalar()) {  // "a,b,c" is accepted as a list, as operators write broker lists that way
    out.clear();
    std::stringstream ss(v.Scalar());
    for (std::string item; std::getline(ss, item, ',');) {
      if (!item.empty()) out.push_back(item);
    }
    return;
  }
  if (!v.IsSequence()) fail(key, std::string("expected a list, got ") + kind_of(v));
  out.clear();
  for (const auto& item : v) {
    if (!item.IsScalar()) fail(key, "every list item must be a single value");
    out.push_back(item.Scalar());
  }
}

void ConfigSection::read(std::string_view key, std::map<std::string, std::string>& out) {
  s_->used.emplace(key);
  YAML::Node v = s_->node[std::string(key)];
  if (!v || v.IsNull()) return;
  if (!v.IsMap()) fail(key, std::string("expected a map, got ") + kind_of(v));
  for (const auto& kv : v) {
    if (!kv.first.IsScalar()) fail(key, "every key must be a single value");
    if (!kv.second.IsScalar()) fail(key, "every value must be a single value");
    out[kv.first.Scalar()] = kv.second.Scalar();
  }
}

void ConfigSection::read(std::string_view key, std::chrono::milliseconds& out) {
  s_->used.emplace(key);
  auto v = scalar(*this, s_->node, key);
  if (!v) return;
  static constexpr std::pair<std::string_view, int64_t> kUnits[] = {
      {"ms", 1}, {"s", 1000}, {"m", 60'000}, {"h", 3'600'000}};
  std::string_view text = *v;
  int64_t scale = 1;
  for (auto [suffix, mult] : kUnits) {
    if (text.size() > suffix.size() && text.ends_with(suffix)) {
      // "ms" must win over "s": check the longer suffix first by order above.
      text.remove_suffix(suffix.size());
      scale = mult;
      break;
    }
  }
  int64_t n = 0;
  if (!parse_int(std::string(text), n) || n < 0) {
    fail(key, "expected a duration such as 250ms, 5s, 2m or 1h, got `" + *v + "`");
  }
  out = std::chrono::milliseconds(n * scale);
}

void ConfigSection::read_size(std::string_view key, uint64_t& out) {
  s_->used.emplace(key);
  auto v = scalar(*this, s_->node, key);
  if (!v) return;
  static constexpr std::pair<std::string_view, uint64_t> kUnits[] = {
      {"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30}, {"B", 1}};
  std::string_view text = *v;
  uint64_t scale = 1;
  for (auto [suffix, mult] : kUnits) {
    if (text.ends_with(suffix)) {
      text.remove_suffix(suffix.size());
      scale = mult;
      break;
    }
  }
  uint64_t n = 0;
  if (!parse_int(std::string(text), n)) {
    fail(key, "expected a size such as 512, 64KiB, 16MiB or 1GiB, got `" + *v + "`");
  }
  out = n * scale;
}

void ConfigSection::finish() const {
  std::string unknown;
  for (const auto& kv : s_->node) {
    // A YAML complex key (`? [a, b]: ...`) is no name: say so instead of letting yaml-cpp throw.
    if (!kv.first.IsScalar()) {
      throw ConfigError(s_->source + ": a config key must be a plain name, not " + std::string(kind_of(kv.first)) +
                        " (in `" + path("") + "`)");
    }
    const std::string& name = kv.first.Scalar();
    if (!s_->used.contains(name)) {
      if (!unknown.empty()) unknown += ", ";
      unknown += "`" + path(name) + "`";
    }
  }
  if (!unknown.empty()) {
    throw ConfigError(s_->source + ": unknown config key " + unknown +
                      ": check its spelling against docs/configuration.md");
  }
}

}  // namespace imlog
