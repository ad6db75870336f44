// The MySQL read model (mysql_model.h): tables of schema/mysql/, filled from batches of events,
// and every ReadModel query in SQL.
//
// Writing a batch
//   Events are turned into row patches held in memory per table and keyed by primary key, so a
//   batch that touches a row ten times writes it once. Each column has a merge rule — assign
//   (last event wins), max, min, or "follow" (takes the new value only when another column grows,
//   e.g. read_pointers.updated_at follows read_seq) — applied identically in memory and in the
//   statement's ON DUPLICATE KEY UPDATE clause. Rows are then written as multi-row
//   INSERT ... ON DUPLICATE KEY UPDATE through prepared statements, grouped by the set of columns
//   present, in chunks of 1024, 512, ..., 1 rows (so a table needs at most eleven statement shapes
//   per column set, prepared once per connection). messages rows are insert-only (a message never
//   changes except by a recall, an UPDATE, or an expiry, a DELETE of the conversation's rows up to
//   a seq with their message_tokens). Everything, the positions included, is one
//   transaction. Rare events that need the current state (RoleChanged to owner demotes the old
//   owner) or update part of a row an upsert could not insert (GroupSettingsChanged) flush what
//   is pending and run their statements in order inside the same transaction.
//
// Idempotence: re-applying events in log order after they were applied leaves every row as it
// was: assignments end at the last event's values, max/min/follow do not move, messages are
// insert-only, and nothing is counted (member_count and unread are derived when read).
//
// Reading: a small pool of connections (pool_size), each with its own prepared statements; a
// connection that lost the server is dropped and the query retried once on a fresh one.
//
// Threading: apply(), positions() and drop() share one writer connection under a mutex; queries
// take a pooled connection; dump() reads in one consistent snapshot.

#include "imlog/projections/mysql_model.h"

#include <cppconn/datatype.h>
#include <cppconn/driver.h>
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <cppconn/statement.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cctype>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <variant>

#include "imlog/engine/streams.h"
#include "mysql_connection.h"
#include "text_index.h"
#include "timeline.h"

namespace imlog {

// ---- errors and connections (mysql_connection.h) -----------------------------------------------

namespace {

class MysqlCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "mysql"; }
  std::string message(int c) const override {
    switch (static_cast<MysqlErrc>(c)) {
      case MysqlErrc::unavailable: return "MySQL unavailable";
      case MysqlErrc::query_failed: return "MySQL statement failed";
      case MysqlErrc::bad_config: return "bad MySQL configuration";
      case MysqlErrc::migration_failed: return "MySQL migration failed";
    }
    return "MySQL error";
  }
};

}  // namespace

const std::error_category& mysql_category() {
  static const MysqlCategory c;
  return c;
}

namespace mysql {

std::string endpoint(const MysqlConfig& config) { return config.host + ":" + std::to_string(config.port); }

Status check_database_name(const MysqlConfig& config) { return check_database_name(config.database, "mysql.database"); }

Status check_database_name(std::string_view n, std::string_view config_key) {
  bool ok = !n.empty() && n.size() <= 64 && std::all_of(n.begin(), n.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '$';
  });
  if (!ok) {
    return fail(MysqlErrc::bad_config, std::string(config_key) + " `" + std::string(n) +
                                           "` is not a plain identifier: use 1 to 64 letters, digits, _ or $");
  }
  return {};
}

namespace {

sql::Driver* driver() {
  static sql::Driver* d = get_driver_instance();  // thread-safe static init
  return d;
}

// Client-side errors of libmysqlclient / libmariadb (CR_*) and server errors meaning "try again".
bool is_connection_error(int code) {
  return code == 2002 || code == 2003 || code == 2005 || code == 2006 || code == 2013 || code == 2055 ||
         code == 2026 || code == 1053 || code == 1927 || code == 4031;
}

}  // namespace

// The client library wants every thread that uses it registered (and unregistered at its end).
void register_thread() {
  struct Registration {
    Registration() { driver()->threadInit(); }
    ~Registration() { driver()->threadEnd(); }
  };
  thread_local Registration r;
  (void)r;
}

bool connection_lost(const sql::SQLException& e) {
  return is_connection_error(e.getErrorCode()) || e.getErrorCode() == 0;
}

Error to_error(const sql::SQLException& e, const MysqlConfig& config, std::string_view what) {
  int code = e.getErrorCode();
  std::string where = "MySQL " + endpoint(config) + " (database " + config.database + ")";
  std::string detail = std::string(e.what()) + " (error " + std::to_string(code) + ", SQLSTATE " +
                       std::string(e.getSQLStateCStr()) + ")";
  if (is_connection_error(code) || code == 1040 || code == 1203) {
    return Error(make_error_code(MysqlErrc::unavailable),
                 where + " is unreachable while " + std::string(what) + ": " + detail +
                     "; check that the server is up and mysql.host/mysql.port point at it",
                 true);
  }
  if (code == 1213 || code == 1205) {  // deadlock, lock wait timeout: the transaction was rolled back
    return Error(make_error_code(MysqlErrc::unavailable), where + ": " + std::string(what) + ": " + detail, true);
  }
  return Error(make_error_code(MysqlErrc::query_failed), where + ": " + std::string(what) + ": " + detail, false);
}

Result<std::unique_ptr<sql::Connection>> connect(const MysqlConfig& config, bool use_database) {
  if (config.port <= 0 || config.port > 65535) {
    return fail(MysqlErrc::bad_config, "mysql.port " + std::to_string(config.port) + " is not a TCP port");
  }
  register_thread();
  sql::ConnectOptionsMap o;
  o["hostName"] = sql::SQLString("tcp://" + endpoint(config));
  o["userName"] = sql::SQLString(config.user);
  o["password"] = sql::SQLString(config.password);
  if (use_database) o["schema"] = sql::SQLString(config.database);
  o["OPT_CONNECT_TIMEOUT"] = 5;
  o["OPT_READ_TIMEOUT"] = 300;
  o["OPT_WRITE_TIMEOUT"] = 300;
  o["OPT_CHARSET_NAME"] = sql::SQLString("utf8mb4");
  try {
    std::unique_ptr<sql::Connection> c(driver()->connect(o));
    return c;
  } catch (const sql::SQLException& e) {
    Error err = to_error(e, config, "connecting as " + config.user);
    if (!err.retryable() && (e.getErrorCode() == 1045 || e.getErrorCode() == 1044)) {
      return fail(MysqlErrc::bad_config, err.message() + "; check mysql.user and mysql.password");
    }
    return tl::unexpected(err);
  }
}

}  // namespace mysql

namespace {

// ---- rows in memory -----------------------------------------------------------------------------

enum class Kind : uint8_t { u64, i64, str };
enum class Merge : uint8_t {
  none,    // never written by events (presence columns); dumped only
  assign,  // last write wins
  max,
  min,
  follow,  // written only when column `follows` grows
  keep,    // written by the insert only (a value fixed for the row's life)
};

struct ColumnSpec {
  const char* name;
  Kind kind;
  Merge merge = Merge::assign;
  int follows = -1;  // index of the leading column (Merge::follow)
};

struct TableSpec {
  const char* name;
  std::vector<ColumnSpec> key;
  std::vector<ColumnSpec> cols;
  bool insert_only = false;  // ON DUPLICATE KEY UPDATE does nothing
  bool dumped = true;
};

using Value = std::variant<std::monostate, uint64_t, int64_t, std::string>;  // monostate: SQL NULL

Value str(std::string_view s) { return Value(std::string(s)); }
Value u64(uint64_t v) { return Value(v); }
Value i64(int64_t v) { return Value(v); }

// Column indexes of each table, in the order of its TableSpec::cols.
namespace users_col { enum { username, password_hash, nickname, email, created_at }; }
namespace profile_col {
enum { nickname, email, avatar_url, signature, allow_search, message_policy, push_enabled, quiet_start_minute,
       quiet_end_minute, status, last_seen, updated_at, time_zone };
}
namespace ucs_col { enum { muted, updated_at }; }
namespace device_col { enum { platform, token, app_id, created_at, removed }; }
namespace friend_col { enum { status, note, status_at, group_name, blocked, created_at, updated_at }; }
namespace group_col { enum { name, description, owner_id, created_at, join_policy, history }; }
namespace member_col {
enum { role, status, invited_by, joined_at, updated_at, joined_seq, banned, banned_by, banned_at };
}
namespace conv_col { enum { type, user_lo, user_hi, group_id, updated_at, last_seq, created_at }; }
namespace msg_col {
enum { conversation_id, seq_id, sender_id, content, message_type, client_msg_id, created_at, recalled, erased };
}
namespace rp_col { enum { updated_at, read_seq }; }
namespace retention_col { enum { keep_days, set_seq }; }
namespace pos_col { enum { next_offset, token, link }; }

const TableSpec kUsers{"users",
                       {{"user_id", Kind::u64}},
                       {{"username", Kind::str},
                        {"password_hash", Kind::str},
                        {"nickname", Kind::str},
                        {"email", Kind::str},
                        {"created_at", Kind::i64}}};
const TableSpec kProfiles{"users_profile",
                          {{"user_id", Kind::u64}},
                          {{"nickname", Kind::str},
                           {"email", Kind::str},
                           {"avatar_url", Kind::str},
                           {"signature", Kind::str},
                           {"allow_search", Kind::i64},
                           {"message_policy", Kind::str},
                           {"push_enabled", Kind::i64},
                           {"quiet_start_minute", Kind::i64},
                           {"quiet_end_minute", Kind::i64},
                           {"status", Kind::str, Merge::none},
                           {"last_seen", Kind::i64, Merge::none},
                           {"updated_at", Kind::i64, Merge::max},
                           {"time_zone", Kind::str}}};
// Push devices (DeviceRegistered, DeviceRemoved): a removed device keeps its row, removed = 1, so
// a rebuild writes the same rows whatever its batches.
const TableSpec kDevices{"user_devices",
                         {{"user_id", Kind::u64}, {"device_id", Kind::u64}},
                         {{"platform", Kind::str},
                          {"token", Kind::str},
                          {"app_id", Kind::str},
                          {"created_at", Kind::i64},
                          {"removed", Kind::i64}}};
const TableSpec kConvSettings{"user_conversation_settings",
                              {{"user_id", Kind::u64}, {"conversation_id", Kind::str}},
                              {{"muted", Kind::i64}, {"updated_at", Kind::i64, Merge::max}}};
const TableSpec kFriendships{"friendships",
                             {{"user_id", Kind::u64}, {"friend_id", Kind::u64}},
                             {{"status", Kind::str},
                              {"note", Kind::str},
                              {"status_at", Kind::i64},
                              {"group_name", Kind::str},
                              {"blocked", Kind::i64},
                              {"created_at", Kind::i64, Merge::min},
                              {"updated_at", Kind::i64, Merge::max}}};
const TableSpec kGroups{"groups",
                        {{"group_id", Kind::u64}},
                        {{"name", Kind::str},
                         {"description", Kind::str},
                         {"owner_id", Kind::u64},
                         {"created_at", Kind::i64},
                         {"join_policy", Kind::str},
                         {"history", Kind::str}}};
const TableSpec kMembers{"group_members",
                         {{"group_id", Kind::u64}, {"user_id", Kind::u64}},
                         {{"role", Kind::str},
                          {"status", Kind::str},
                          {"invited_by", Kind::u64},
                          {"joined_at", Kind::i64},
                          {"updated_at", Kind::i64},
                          {"joined_seq", Kind::u64, Merge::max},
                          {"banned", Kind::i64},
                          {"banned_by", Kind::u64},
                          {"banned_at", Kind::i64}}};
const TableSpec kConversations{"conversations",
                               {{"conversation_id", Kind::str}},
                               {{"type", Kind::str, Merge::keep},
                                {"user_lo", Kind::u64, Merge::keep},
                                {"user_hi", Kind::u64, Merge::keep},
                                {"group_id", Kind::u64, Merge::keep},
                                {"updated_at", Kind::i64, Merge::follow, conv_col::last_seq},
                                {"last_seq", Kind::u64, Merge::max},
                                {"created_at", Kind::i64, Merge::min}}};
const TableSpec kMessages{"messages",
                          {{"message_id", Kind::u64}},
                          {{"conversation_id", Kind::str},
                           {"seq_id", Kind::u64},
                           {"sender_id", Kind::u64},
                           {"content", Kind::str},
                           {"message_type", Kind::str},
                           {"client_msg_id", Kind::str},
                           {"created_at", Kind::i64},
                           {"recalled", Kind::i64},
                           {"erased", Kind::i64}},
                          /*insert_only=*/true};
// The search index (text_index.h): one row per token of a message, written with the message.
const TableSpec kMessageTokens{"message_tokens",
                               {{"message_id", Kind::u64}, {"token", Kind::str}},
                               {},
                               /*insert_only=*/true};
const TableSpec kReadPointers{"read_pointers",
                              {{"user_id", Kind::u64}, {"conversation_id", Kind::str}},
                              {{"updated_at", Kind::i64, Merge::follow, rp_col::read_seq},
                               {"read_seq", Kind::u64, Merge::max}}};
// Retention overrides (RetentionSet, migration 8): each side's latest, keep_days NULL for none.
// keep_days follows set_seq (listed before it: MariaDB assigns in order), so a replayed batch or an
// older event leaves the latest.
const TableSpec kRetention{"conversation_retention",
                           {{"conversation_id", Kind::str}, {"user_id", Kind::u64}},
                           {{"keep_days", Kind::u64, Merge::follow, retention_col::set_seq},
                            {"set_seq", Kind::u64, Merge::max}}};
const TableSpec kPositions{"projection_offsets",
                           {{"partition_id", Kind::i64}},
                           {{"next_offset", Kind::i64}, {"token", Kind::u64}, {"link", Kind::u64}},
                           false,
                           /*dumped=*/false};

// Every table, in the order a batch writes them: messages first, so a recall in the same batch
// finds its row; positions last.
const std::vector<const TableSpec*> kWriteOrder = {&kMessages,      &kMessageTokens, &kUsers,   &kProfiles,
                                                   &kConvSettings, &kDevices,       &kFriendships, &kGroups,
                                                   &kMembers,       &kConversations, &kReadPointers, &kRetention,
                                                   &kPositions};

std::string quoted(std::string_view name) { return "`" + std::string(name) + "`"; }

// The rows one batch writes to one table, merged per primary key, in order of first write.
class PendingTable {
 public:
  explicit PendingTable(const TableSpec& spec) : spec_(spec) {}

  using Cells = std::vector<std::optional<Value>>;
  using Row = std::pair<std::vector<Value>, Cells>;

  // Merges column values into the row `key` by the columns' rules.
  void patch(std::vector<Value> key, std::initializer_list<std::pair<int, Value>> values) {
    encode_key(key, scratch_);
    auto [it, inserted] = index_.try_emplace(scratch_, rows_.size());
    if (inserted) rows_.emplace_back(std::move(key), Cells(spec_.cols.size()));
    Cells& row = rows_[it->second].second;
    // Followers decide against their leader's value before the leader is merged.
    for (const auto& [c, v] : values) {
      const auto& col = spec_.cols[static_cast<size_t>(c)];
      if (col.merge != Merge::follow) continue;
      const Value* lead = nullptr;
      for (const auto& [lc, lv] : values) {
        if (lc == col.follows) lead = &lv;
      }
      const auto& old_lead = row[static_cast<size_t>(col.follows)];
      if (!row[static_cast<size_t>(c)] || !old_lead || (lead && *old_lead < *lead)) row[static_cast<size_t>(c)] = v;
    }
    for (const auto& [c, v] : values) {
      auto& cell = row[static_cast<size_t>(c)];
      switch (spec_.cols[static_cast<size_t>(c)].merge) {
        case Merge::follow: break;
        case Merge::keep:
          if (!cell) cell = v;
          break;
        case Merge::none:
        case Merge::assign: cell = v; break;
        case Merge::max:
          if (!cell || *cell < v) cell = v;
          break;
        case Merge::min:
          if (!cell || v < *cell) cell = v;
          break;
      }
    }
  }

  [[nodiscard]] const TableSpec& spec() const { return spec_; }
  [[nodiscard]] bool empty() const { return rows_.empty(); }
  [[nodiscard]] const std::vector<Row>& rows() const { return rows_; }
  void clear() {
    rows_.clear();
    index_.clear();
  }

 private:
  // An unambiguous byte string of a key, for hashing.
  static void encode_key(const std::vector<Value>& key, std::string& out) {
    out.clear();
    for (const auto& v : key) {
      out += static_cast<char>(v.index());
      if (const auto* s = std::get_if<std::string>(&v)) {
        uint64_t n = s->size();
        out.append(reinterpret_cast<const char*>(&n), sizeof n);
        out += *s;
      } else if (const auto* u = std::get_if<uint64_t>(&v)) {
        out.append(reinterpret_cast<const char*>(u), sizeof *u);
      } else if (const auto* i = std::get_if<int64_t>(&v)) {
        out.append(reinterpret_cast<const char*>(i), sizeof *i);
      }
    }
  }

  const TableSpec& spec_;
  std::vector<Row> rows_;
  std::unordered_map<std::string, size_t> index_;
  std::string scratch_;
};

void bind(sql::PreparedStatement& st, unsigned idx, const Value& v) {
  switch (v.index()) {
    case 0: st.setNull(idx, sql::DataType::VARCHAR); break;
    case 1: st.setUInt64(idx, std::get<uint64_t>(v)); break;
    case 2: st.setInt64(idx, std::get<int64_t>(v)); break;
    case 3: st.setString(idx, sql::SQLString(std::get<std::string>(v))); break;
  }
}

// ---- a connection with its prepared statements ----------------------------------------------

struct Conn {
  std::unique_ptr<sql::Connection> c;  // declared first: destroyed after the statements
  std::unordered_map<std::string, std::unique_ptr<sql::PreparedStatement>> stmts;
  uint64_t generation = 0;
  bool broken = false;
  bool fresh = true;  // not used yet: a failure on it is not a stale connection

  // The statement cached under `key`, prepared from make_sql() on first use.
  template <class MakeSql>
  sql::PreparedStatement& prepare(const std::string& key, MakeSql&& make_sql) {
    auto it = stmts.find(key);
    if (it != stmts.end()) return *it->second;
    std::unique_ptr<sql::PreparedStatement> st(c->prepareStatement(make_sql()));
    return *stmts.emplace(key, std::move(st)).first->second;
  }
  sql::PreparedStatement& prepare(const std::string& sql) {
    return prepare(sql, [&] { return sql; });
  }
};

// Chunks of a multi-row statement: 1024, 512, ..., 1 rows.
constexpr size_t kMaxRowsPerStatement = 1024;
size_t chunk_rows(size_t n) { return std::bit_floor(std::min(n, kMaxRowsPerStatement)); }

std::string upsert_sql(const TableSpec& t, uint64_t mask, size_t rows) {
  std::string cols;
  size_t per_row = 0;
  for (const auto& k : t.key) {
    cols += (per_row++ ? "," : "") + quoted(k.name);
  }
  for (size_t i = 0; i < t.cols.size(); ++i) {
    if (mask & (1ull << i)) cols += (per_row++ ? "," : "") + quoted(t.cols[i].name);
  }
  std::string tuple = "(";
  for (size_t i = 0; i < per_row; ++i) tuple += i ? ",?" : "?";
  tuple += ')';
  std::string sql = "INSERT INTO " + quoted(t.name) + " (" + cols + ") VALUES ";
  for (size_t r = 0; r < rows; ++r) sql += (r ? "," : "") + tuple;
  sql += " ON DUPLICATE KEY UPDATE ";
  std::string updates;
  if (!t.insert_only) {
    for (size_t i = 0; i < t.cols.size(); ++i) {
      if (!(mask & (1ull << i)) || t.cols[i].merge == Merge::keep) continue;
      const auto& c = t.cols[i];
      std::string n = quoted(c.name);
      std::string u;
      switch (c.merge) {
        case Merge::keep:  // not reached
        case Merge::none:
        case Merge::assign: u = n + "=VALUES(" + n + ")"; break;
        case Merge::max: u = n + "=GREATEST(" + n + ",VALUES(" + n + "))"; break;
        case Merge::min: u = n + "=LEAST(" + n + ",VALUES(" + n + "))"; break;
        case Merge::follow: {
          std::string l = quoted(t.cols[static_cast<size_t>(c.follows)].name);
          u = n + "=IF(VALUES(" + l + ")>" + l + ",VALUES(" + n + ")," + n + ")";
          break;
        }
      }
      updates += (updates.empty() ? "" : ",") + u;
    }
  }
  if (updates.empty()) updates = quoted(t.key[0].name) + "=" + quoted(t.key[0].name);
  return sql + updates;
}

// Writes the table's pending rows: grouped by the columns present, multi-row upserts.
void flush_table(Conn& conn, const PendingTable& pending) {
  const TableSpec& t = pending.spec();
  std::map<uint64_t, std::vector<const PendingTable::Row*>> by_mask;
  for (const auto& row : pending.rows()) {
    uint64_t mask = 0;
    for (size_t i = 0; i < row.second.size(); ++i) {
      if (row.second[i]) mask |= 1ull << i;
    }
    by_mask[mask].push_back(&row);
  }
  for (const auto& [mask, rows] : by_mask) {
    for (size_t done = 0; done < rows.size();) {
      size_t n = chunk_rows(rows.size() - done);
      std::string key = std::string(t.name) + '#' + std::to_string(mask) + '#' + std::to_string(n);
      auto& st = conn.prepare(key, [&] { return upsert_sql(t, mask, n); });
      unsigned idx = 1;
      for (size_t r = done; r < done + n; ++r) {
        for (const auto& k : rows[r]->first) bind(st, idx++, k);
        for (const auto& cell : rows[r]->second) {
          if (cell) bind(st, idx++, *cell);
        }
      }
      st.executeUpdate();
      done += n;
    }
  }
}

// The rows of one batch, written at flush().
class BatchWriter {
 public:
  BatchWriter()
      : users(kUsers),
        profiles(kProfiles),
        conv_settings(kConvSettings),
        devices(kDevices),
        friendships(kFriendships),
        groups(kGroups),
        members(kMembers),
        conversations(kConversations),
        messages(kMessages),
        message_tokens(kMessageTokens),
        read_pointers(kReadPointers),
        retention(kRetention),
        positions(kPositions) {}

  PendingTable users, profiles, conv_settings, devices, friendships, groups, members, conversations, messages,
      message_tokens, read_pointers, retention, positions;
  TokenList tokens;  // scratch for the message being indexed
  std::vector<uint64_t> recalls;  // message ids to empty, after the messages are written

  void flush(Conn& conn) {
    flush_table(conn, messages);
    messages.clear();
    flush_table(conn, message_tokens);
    message_tokens.clear();
    for (size_t done = 0; done < recalls.size();) {
      size_t n = chunk_rows(recalls.size() - done);
      auto& st = conn.prepare("recall#" + std::to_string(n), [&] {
        std::string sql = "UPDATE messages SET content = '', recalled = 1 WHERE message_id IN (";
        for (size_t i = 0; i < n; ++i) sql += i ? ",?" : "?";
        return sql + ")";
      });
      for (size_t i = 0; i < n; ++i) st.setUInt64(static_cast<unsigned>(i + 1), recalls[done + i]);
      st.executeUpdate();
      done += n;
    }
    recalls.clear();
    for (PendingTable* t : {&users, &profiles, &conv_settings, &devices, &friendships, &groups, &members, &conversations,
                            &read_pointers, &retention, &positions}) {
      flush_table(conn, *t);
      t->clear();
    }
  }
};

// ---- events → rows --------------------------------------------------------------------------

const char* role_name(fb::Role r) {
  switch (r) {
    case fb::Role::Owner: return "owner";
    case fb::Role::Admin: return "admin";
    default: return "member";
  }
}

void friend_status(BatchWriter& w, uint64_t a, uint64_t b, std::string_view status_ab, std::string_view status_ba,
                   std::optional<std::string_view> note, int64_t ts) {
  using namespace friend_col;
  for (auto [x, y, st] : {std::tuple{a, b, status_ab}, std::tuple{b, a, status_ba}}) {
    if (note) {
      w.friendships.patch({u64(x), u64(y)}, {{status, str(st)},
                                             {friend_col::note, str(*note)},
                                             {status_at, i64(ts)},
                                             {created_at, i64(ts)},
                                             {updated_at, i64(ts)}});
    } else {
      w.friendships.patch({u64(x), u64(y)},
                          {{status, str(st)}, {status_at, i64(ts)}, {created_at, i64(ts)}, {updated_at, i64(ts)}});
    }
  }
}

void friend_flag(BatchWriter& w, uint64_t a, uint64_t b, int col, Value v, int64_t ts) {
  using namespace friend_col;
  w.friendships.patch({u64(a), u64(b)}, {{col, std::move(v)}, {created_at, i64(ts)}, {updated_at, i64(ts)}});
}

// ---- reading helpers --------------------------------------------------------------------------

constexpr const char* kMessageCols =
    "message_id, conversation_id, seq_id, sender_id, content, message_type, client_msg_id, created_at, recalled, erased";

std::string get_str(const sql::ResultSet& rs, uint32_t i) { return rs.getString(i).asStdString(); }

MessageView read_message(const sql::ResultSet& rs, uint32_t first) {
  MessageView m;
  m.message_id = rs.getUInt64(first);
  m.conversation_id = get_str(rs, first + 1);
  m.seq_id = rs.getUInt64(first + 2);
  m.sender_id = rs.getUInt64(first + 3);
  m.content = get_str(rs, first + 4);
  m.message_type = get_str(rs, first + 5);
  m.client_msg_id = get_str(rs, first + 6);
  m.created_at = rs.getInt64(first + 7);
  m.recalled = rs.getInt(first + 8) != 0;
  m.erased = rs.getInt(first + 9) != 0;
  return m;
}

// The conversations a user takes part in (4 parameters: the user id).
constexpr const char* kUserConversations =
    "SELECT conversation_id FROM conversations WHERE type = 'single' AND (user_lo = ? OR user_hi = ?) "
    "UNION SELECT c.conversation_id FROM group_members gm JOIN conversations c "
    "ON c.group_id = gm.group_id AND c.type = 'group' WHERE gm.user_id = ? AND gm.status = 'active' "
    "UNION SELECT conversation_id FROM read_pointers WHERE user_id = ? AND conversation_id = 'world'";

// Escapes LIKE's wildcards (and its escape character) in a bound pattern fragment.
std::string like_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '%' || c == '_') out += '\\';
    out += c;
  }
  return out;
}

std::string pad20(uint64_t v) {
  std::string s = std::to_string(v);
  return std::string(20 - std::min<size_t>(20, s.size()), '0') + s;
}

// ---- the model ------------------------------------------------------------------------------

class MysqlModelImpl final : public MysqlModel {
 public:
  explicit MysqlModelImpl(MysqlConfig config) : config_(std::move(config)) {}

  Status init() {
    auto w = new_conn();
    IMLOG_TRY(w);
    writer_ = std::move(*w);
    try {
      writer_->c->setAutoCommit(false);
    } catch (const sql::SQLException& e) {
      return tl::unexpected(mysql::to_error(e, config_, "opening the writer connection"));
    }
    return {};
  }

  std::string_view name() const override { return "mysql"; }

  // ---- ProjectionSink ----

  Result<std::vector<PartitionPosition>> positions() override {
    IMLOG_TRY(ensure_schema());
    std::lock_guard lock(writer_mu_);
    return with_writer<std::vector<PartitionPosition>>("reading projection_offsets", [&](Conn& c) {
      std::vector<PartitionPosition> out;
      auto& st = c.prepare("SELECT partition_id, next_offset, token, link FROM projection_offsets ORDER BY partition_id");
      std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
      while (rs->next()) {
        out.push_back(PartitionPosition{rs->getInt(1), rs->getInt64(2), rs->getUInt64(3), rs->getUInt64(4)});
      }
      c.c->commit();  // end the read's snapshot
      return out;
    });
  }

  Status apply(const EventBatch& batch) override {
    IMLOG_TRY(ensure_schema());
    std::lock_guard lock(writer_mu_);
    auto r = with_writer<bool>("applying a batch of " + std::to_string(batch.events.size()) + " events", [&](Conn& c) {
      BatchWriter w;
      std::vector<timeline::PointerMove> moves;
      for (const auto& item : batch.events) {
        if (item.event) add_event(c, w, item, moves);
      }
      for (const auto& p : batch.positions) {
        w.positions.patch({i64(p.partition)}, {{pos_col::next_offset, i64(p.next_offset)}, {pos_col::token, u64(p.token)}, {pos_col::link, u64(p.link)}});
      }
      w.flush(c);
      c.c->commit();
      return true;
    });
    if (!r) return tl::unexpected(r.error());
    return {};
  }

  Status dump(const RowVisitor& visit) override;

  Status drop() override {
    std::lock_guard slock(schema_mu_);
    std::lock_guard lock(writer_mu_);
    auto r = with_writer<bool>("dropping the database", [&](Conn& c) {
      std::unique_ptr<sql::Statement> st(c.c->createStatement());
      st->execute("DROP DATABASE IF EXISTS `" + config_.database + "`");
      return true;
    });
    if (!r) return tl::unexpected(r.error());
    dropped_ = true;
    ++generation_;
    return {};
  }

  // ---- ReadModel ----

  Result<HistoryPage> history(std::string_view conversation, const HistoryRange& range) override {
    return query<HistoryPage>("reading the history of " + std::string(conversation), [&](Conn& c) {
      HistoryPage page;
      std::string sql = std::string("SELECT ") + kMessageCols + " FROM messages WHERE conversation_id = ? AND seq_id > ? AND seq_id < ? ORDER BY seq_id " +
                        (range.forward ? "ASC" : "DESC") + " LIMIT ?";
      auto& st = c.prepare(sql);
      st.setString(1, sql::SQLString(std::string(conversation)));
      st.setUInt64(2, range.after_seq);
      st.setUInt64(3, range.before_seq > 0 ? range.before_seq : UINT64_MAX);
      st.setUInt64(4, uint64_t{range.limit} + 1);
      std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
      while (rs->next()) page.messages.push_back(read_message(*rs, 1));
      if (page.messages.size() > range.limit) {
        page.has_more = true;
        page.messages.resize(range.limit);
      }
      if (!range.forward) std::reverse(page.messages.begin(), page.messages.end());
      return page;
    });
  }

  Result<std::optional<MessageView>> message(uint64_t message_id) override {
    return query<std::optional<MessageView>>("reading message " + std::to_string(message_id), [&](Conn& c) {
      auto& st = c.prepare(std::string("SELECT ") + kMessageCols + " FROM messages WHERE message_id = ?");
      st.setUInt64(1, message_id);
      std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
      std::optional<MessageView> out;
      if (rs->next()) out = read_message(*rs, 1);
      return out;
    });
  }

  Result<std::vector<ConversationView>> conversations(uint64_t user_id) override {
    return query<std::vector<ConversationView>>("listing the conversations of user " + std::to_string(user_id), [&](Conn& c) {
      auto& st = c.prepare(
          std::string("SELECT c.conversation_id, c.type, c.last_seq, COALESCE(r.read_seq, 0), c.updated_at, "
                      "c.user_lo, c.user_hi, g.name, COALESCE(pp.nickname, pu.nickname, ''), m.message_id, "
                      "m.conversation_id, m.seq_id, m.sender_id, m.content, m.message_type, m.client_msg_id, "
                      "m.created_at, m.recalled, m.erased, "
                      // Unread: messages above the read seq, not system rows (timeline.h).
                      "(SELECT COUNT(*) FROM messages u WHERE u.conversation_id = c.conversation_id "
                      "AND u.seq_id > COALESCE(r.read_seq, 0) AND u.message_type <> 'system') "
                      "FROM conversations c "
                      "LEFT JOIN read_pointers r ON r.user_id = ? AND r.conversation_id = c.conversation_id "
                      "LEFT JOIN messages m ON m.conversation_id = c.conversation_id AND m.seq_id = c.last_seq "
                      "LEFT JOIN `groups` g ON c.type = 'group' AND g.group_id = c.group_id "
                      "LEFT JOIN users pu ON c.type = 'single' AND pu.user_id = IF(c.user_lo = ?, c.user_hi, c.user_lo) "
                      "LEFT JOIN users_profile pp ON pp.user_id = pu.user_id "
                      "WHERE c.conversation_id IN (") +
          kUserConversations + ") ORDER BY c.updated_at DESC, c.conversation_id");
      for (unsigned i = 1; i <= 6; ++i) st.setUInt64(i, user_id);
      std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
      std::vector<ConversationView> out;
      while (rs->next()) {
        ConversationView v;
        v.conversation_id = get_str(*rs, 1);
        v.type = get_str(*rs, 2);
        v.last_seq = rs->getUInt64(3);
        v.read_seq = rs->getUInt64(4);
        v.unread = rs->getUInt64(20);
        v.updated_at = rs->getInt64(5);
        if (v.type == "single") {
          uint64_t lo = rs->getUInt64(6), hi = rs->getUInt64(7);
          v.peer_id = lo == user_id ? hi : lo;
          v.title = get_str(*rs, 9);
        } else if (v.type == "group") {
          v.title = get_str(*rs, 8);
        } else {
          v.title = v.conversation_id;
        }
        if (!rs->isNull(10)) v.last_message = read_message(*rs, 10);
        out.push_back(std::move(v));
      }
      return out;
    });
  }

  Result<std::optional<UserView>> user(uint64_t user_id) override {
    return query<std::optional<UserView>>("reading user " + std::to_string(user_id), [&](Conn& c) {
      auto& st = c.prepare(std::string(kUserSelect) + " WHERE u.user_id = ?");
      st.setUInt64(1, user_id);
      std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
      std::optional<UserView> out;
      if (!rs->next()) return out;
      out = read_user(*rs);
      auto& mt = c.prepare(
          "SELECT conversation_id FROM user_conversation_settings WHERE user_id = ? AND muted = 1 ORDER BY conversation_id");
      mt.setUInt64(1, user_id);
      std::unique_ptr<sql::ResultSet> ms(mt.executeQuery());
      while (ms->next()) out->muted.push_back(get_str(*ms, 1));
      auto& dt = c.prepare(
          "SELECT device_id, platform, token, app_id, created_at FROM user_devices WHERE user_id = ? AND removed = 0 "
          "ORDER BY device_id");
      dt.setUInt64(1, user_id);
      std::unique_ptr<sql::ResultSet> ds(dt.executeQuery());
      while (ds->next()) {
        out->devices.push_back(DeviceView{ds->getUInt64(1), get_str(*ds, 2), get_str(*ds, 3), get_str(*ds, 4), ds->getInt64(5)});
      }
      return out;
    });
  }

  Result<std::optional<Credentials>> credentials(std::string_view username) override {
    return query<std::optional<Credentials>>("reading the credentials of `" + std::string(username) + "`", [&](Conn& c) {
      auto& st = c.prepare("SELECT user_id, password_hash FROM users WHERE username = ?");
      st.setString(1, sql::SQLString(std::string(username)));
      std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
      std::optional<Credentials> out;
      if (rs->next()) out = Credentials{rs->getUInt64(1), get_str(*rs, 2)};
      return out;
    });
  }

  Result<std::vector<UserView>> search_users(std::string_view prefix, uint64_t after_user_id, uint32_t limit) override {
    return query<std::vector<UserView>>("searching users", [&](Conn& c) {
      auto& st = c.prepare(std::string(kUserSelect) +
                           " WHERE u.user_id > ? AND COALESCE(p.allow_search, 1) = 1 AND "
                           "(LOWER(u.username) LIKE CONCAT(LOWER(?), '%') OR "
                           "LOWER(COALESCE(p.nickname, u.nickname)) LIKE CONCAT(LOWER(?), '%')) "
                           "ORDER BY u.user_id LIMIT ?");
      std::string pattern = like_escape(prefix);
      st.setUInt64(1, after_user_id);
      st.setString(2, sql::SQLString(pattern));
      st.setString(3, sql::SQLString(pattern));
      st.setUInt64(4, limit);
      std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
      std::vector<UserView> out;
      while (rs->next()) out.push_back(read_user(*rs));
      return out;
    });
  }

  Result<std::optional<GroupView>> group(uint64_t group_id) override {
    return query<std::optional<GroupView>>("reading group " + std::to_string(group_id), [&](Conn& c) {
      auto& st = c.prepare(
          "SELECT g.group_id, g.name, g.description, g.owner_id, g.created_at, "
          "(SELECT COUNT(*) FROM group_members m WHERE m.group_id = g.group_id AND m.status = 'active'), "
          "g.join_policy, g.history FROM `groups` g WHERE g.group_id = ?");
      st.setUInt64(1, group_id);
      std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
      std::optional<GroupView> out;
      if (rs->next()) {
        out = GroupView{rs->getUInt64(1), get_str(*rs, 2), get_str(*rs, 3), rs->getUInt64(4),
                        static_cast<uint32_t>(rs->getUInt64(6)), rs->getInt64(5), get_str(*rs, 7), get_str(*rs, 8)};
      }
      return out;
    });
  }

  Result<std::vector<MemberView>> members(uint64_t group_id, uint64_t after_user_id, uint32_t limit) override {
    return query<std::vector<MemberView>>("listing the members of group " + std::to_string(group_id), [&](Conn& c) {
      auto& st = c.prepare(
          "SELECT user_id, role, joined_at FROM group_members WHERE group_id = ? AND status = 'active' AND user_id > ? "
          "ORDER BY user_id LIMIT ?");
      st.setUInt64(1, group_id);
      st.setUInt64(2, after_user_id);
      st.setUInt64(3, limit);
      std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
      std::vector<MemberView> out;
      while (rs->next()) out.push_back(MemberView{rs->getUInt64(1), get_str(*rs, 2), rs->getInt64(3)});
      return out;
    });
  }

  Result<std::vector<BanView>> bans(uint64_t group_id, uint64_t after_user_id, uint32_t limit) override {
    return query<std::vector<BanView>>("listing the bans of group " + std::to_string(group_id), [&](Conn& c) {
      auto& st = c.prepare(
          "SELECT user_id, banned_by, banned_at FROM group_members WHERE group_id = ? AND banned = 1 AND user_id > ? "
          "ORDER BY user_id LIMIT ?");
      st.setUInt64(1, group_id);
      st.setUInt64(2, after_user_id);
      st.setUInt64(3, limit);
      std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
      std::vector<BanView> out;
      while (rs->next()) out.push_back(BanView{rs->getUInt64(1), rs->getUInt64(2), rs->getInt64(3)});
      return out;
    });
  }

  Result<ReadAccess> read_access(std::string_view conversation, uint64_t user_id) override {
    ReadAccess access;
    auto ref = parse_stream(conversation);
    if (!ref || !is_conversation(ref->kind) || user_id == 0) return access;
    if (ref->kind == StreamKind::world || ref->kind == StreamKind::single) {
      access.allowed = ref->kind == StreamKind::world || user_id == ref->a || user_id == ref->b;
      return access;
    }
    return query<ReadAccess>("checking membership of group " + std::to_string(ref->a), [&](Conn& c) {
      auto& st = c.prepare(
          "SELECT gm.joined_seq, g.history FROM group_members gm JOIN `groups` g ON g.group_id = gm.group_id "
          "WHERE gm.group_id = ? AND gm.user_id = ? AND gm.status = 'active'");
      st.setUInt64(1, ref->a);
      st.setUInt64(2, user_id);
      std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
      if (rs->next()) {
        access.allowed = true;
        access.joined_seq = rs->getUInt64(1);
        access.history = get_str(*rs, 2);
      }
      return access;
    });
  }

  // The message_tokens rows of every query token, joined on the message (kMessageCols' first
  // column, message_id, is the only one both tables have: "m." qualifies it), read from the newest
  // message down (the index (token, message_id) backwards); each row found is then checked with
  // matches() (a CJK run must appear as written) in chunks of limit + 1 rows until the page is
  // full, the rows run out, or kMaxChunks chunks were read (the page then ends where reading did).
  Result<SearchPage> search_messages(const SearchRequest& request) override {
    constexpr int kMaxChunks = 20;
    const uint32_t limit = std::clamp<uint32_t>(request.limit, 1, kMaxSearchPage);
    SearchQuery q = parse_search_query(request.text);
    if (!q.searchable()) return SearchPage{};
    return query<SearchPage>("searching messages of user " + std::to_string(request.user_id), [&](Conn& c) {
      std::string sql = std::string("SELECT m.") + kMessageCols + " FROM message_tokens t0 JOIN messages m ON m.message_id = t0.message_id";
      for (size_t i = 1; i < q.tokens.size(); ++i) {
        std::string t = "t" + std::to_string(i);
        sql += " JOIN message_tokens " + t + " ON " + t + ".message_id = t0.message_id AND " + t + ".token = ?";
      }
      sql += " WHERE t0.token = ? AND t0.message_id < ? AND m.recalled = 0 AND m.conversation_id IN (" +
             std::string(kUserConversations) + ")";
      if (!request.conversation.empty()) sql += " AND m.conversation_id = ?";
      sql += " ORDER BY t0.message_id DESC LIMIT ?";
      auto& st = c.prepare(sql);
      std::vector<MessageView> found;
      TokenList content_tokens;
      uint64_t before = request.before_id == 0 ? UINT64_MAX : request.before_id;
      for (int chunk = 0; chunk < kMaxChunks; ++chunk) {
        unsigned idx = 1;
        for (size_t i = 1; i < q.tokens.size(); ++i) st.setString(idx++, sql::SQLString(q.tokens[i]));
        st.setString(idx++, sql::SQLString(q.tokens[0]));
        st.setUInt64(idx++, before);
        for (int i = 0; i < 4; ++i) st.setUInt64(idx++, request.user_id);
        if (!request.conversation.empty()) st.setString(idx++, sql::SQLString(request.conversation));
        st.setUInt64(idx, limit + 1);
        std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
        size_t rows = 0;
        while (rs->next()) {
          ++rows;
          MessageView m = read_message(*rs, 1);
          before = m.message_id;
          tokenize(m.content, content_tokens, kMaxTokensPerMessage);
          if (matches(q, content_tokens, m.content)) found.push_back(std::move(m));
        }
        if (rows < limit + 1) return search_page(std::move(found), limit, 0, true);
        if (found.size() > limit) return search_page(std::move(found), limit, 0, false);
      }
      return search_page(std::move(found), limit, before - 1, false);
    });
  }

  Result<std::vector<FriendView>> friends(uint64_t user_id) override {
    return query<std::vector<FriendView>>("listing the friends of user " + std::to_string(user_id), [&](Conn& c) {
      auto& st = c.prepare(
          "SELECT friend_id, status, note, group_name, status_at FROM friendships WHERE user_id = ? AND "
          "status IN ('pending_out', 'pending_in', 'accepted') ORDER BY friend_id");
      st.setUInt64(1, user_id);
      std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
      std::vector<FriendView> out;
      while (rs->next()) {
        std::string s = get_str(*rs, 2);
        out.push_back(FriendView{rs->getUInt64(1),
                                 s == "accepted" ? "friends" : s == "pending_in" ? "incoming" : "outgoing",
                                 get_str(*rs, 3), get_str(*rs, 4), rs->getInt64(5)});
      }
      return out;
    });
  }

  Result<std::vector<uint64_t>> blocked(uint64_t user_id) override {
    return query<std::vector<uint64_t>>("listing the users blocked by " + std::to_string(user_id), [&](Conn& c) {
      auto& st = c.prepare("SELECT friend_id FROM friendships WHERE user_id = ? AND blocked = 1 ORDER BY friend_id");
      st.setUInt64(1, user_id);
      std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
      std::vector<uint64_t> out;
      while (rs->next()) out.push_back(rs->getUInt64(1));
      return out;
    });
  }

  Result<RetentionOverrides> retention(std::string_view conversation) override {
    RetentionOverrides out;
    auto ref = parse_stream(conversation);
    if (!ref || !is_conversation(ref->kind)) return out;
    return query<RetentionOverrides>("reading the retention of " + std::string(conversation), [&](Conn& c) {
      auto& st = c.prepare("SELECT user_id, keep_days FROM conversation_retention WHERE conversation_id = ?");
      st.setString(1, sql::SQLString(std::string(conversation)));
      std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
      while (rs->next()) {
        if (rs->isNull(2)) continue;
        auto days = static_cast<uint32_t>(rs->getUInt64(2));
        uint64_t side = rs->getUInt64(1);
        if (ref->kind == StreamKind::single && side == ref->b) out.b = days;
        else out.a = days;
      }
      return out;
    });
  }

  Result<std::vector<std::string>> friend_groups(uint64_t user_id) override {
    return query<std::vector<std::string>>("listing the friend groups of user " + std::to_string(user_id), [&](Conn& c) {
      auto& st = c.prepare(
          "SELECT DISTINCT group_name FROM friendships WHERE user_id = ? AND group_name <> '' ORDER BY group_name");
      st.setUInt64(1, user_id);
      std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
      std::vector<std::string> out;
      while (rs->next()) out.push_back(get_str(*rs, 1));
      return out;
    });
  }

 private:
  static constexpr const char* kUserSelect =
      "SELECT u.user_id, u.username, COALESCE(p.nickname, u.nickname), COALESCE(p.avatar_url, ''), "
      "COALESCE(p.signature, ''), COALESCE(p.email, u.email), COALESCE(p.allow_search, 1), "
      "COALESCE(p.message_policy, 'everyone'), COALESCE(p.push_enabled, 1), COALESCE(p.quiet_start_minute, -1), "
      "COALESCE(p.quiet_end_minute, -1), u.created_at, COALESCE(p.time_zone, '') FROM users u "
      "LEFT JOIN users_profile p ON p.user_id = u.user_id";

  static UserView read_user(const sql::ResultSet& rs) {
    UserView u;
    u.user_id = rs.getUInt64(1);
    u.username = get_str(rs, 2);
    u.nickname = get_str(rs, 3);
    u.avatar_url = get_str(rs, 4);
    u.signature = get_str(rs, 5);
    u.email = get_str(rs, 6);
    u.allow_search = rs.getInt(7) != 0;
    u.message_policy = get_str(rs, 8);
    u.push_enabled = rs.getInt(9) != 0;
    u.quiet_start_minute = rs.getInt(10);
    u.quiet_end_minute = rs.getInt(11);
    u.created_at = rs.getInt64(12);
    u.time_zone = get_str(rs, 13);
    return u;
  }

  // UserErased (schema 10), after what is pending, in the batch's transaction: the user's
  // profile, settings, devices and friend group names go; their messages keep their rows, emptied
  // and marked erased, without search tokens (timeline.h). A rebuild after the erasure writes the
  // same rows: it cannot open what the user sealed.
  static void erase_user(Conn& c, uint64_t user) {
    static constexpr const char* kStatements[] = {
        "DELETE t FROM message_tokens t JOIN messages m ON m.message_id = t.message_id "
        "WHERE m.sender_id = ? AND m.message_type <> 'system'",
        "UPDATE messages SET content = '', erased = 1 WHERE sender_id = ? AND message_type <> 'system'",
        "DELETE FROM users WHERE user_id = ?",
        "DELETE FROM users_profile WHERE user_id = ?",
        "DELETE FROM user_conversation_settings WHERE user_id = ?",
        "DELETE FROM user_devices WHERE user_id = ?",
        "UPDATE friendships SET group_name = '' WHERE user_id = ?",
    };
    for (const char* sql : kStatements) {
      auto& st = c.prepare(sql);
      st.setUInt64(1, user);
      st.executeUpdate();
    }
  }

  // One event's rows. May flush `w` (events that need the current state). An erased owner's
  // registration or profile update writes nothing (projection.h), so a rebuild after the erasure
  // equals the live model that deleted them.
  void add_event(Conn& c, BatchWriter& w, const EventBatch::Item& item, std::vector<timeline::PointerMove>& moves) {
    const fb::EventEnvelope& e = *item.event;
    const int64_t ts = e.timestamp_ms();
    auto ref = parse_stream(sv(e.stream()));
    bool profile = e.event_type() == fb::Event::UserRegistered || e.event_type() == fb::Event::ProfileUpdated;
    if (item.erased && profile) return;
    switch (e.event_type()) {
      case fb::Event::UserErased:
        w.flush(c);
        erase_user(c, e.event_as_UserErased()->user_id());
        break;
      case fb::Event::UserRegistered: {
        auto* p = e.event_as_UserRegistered();
        using namespace users_col;
        w.users.patch({u64(p->user_id())}, {{username, str(sv(p->username()))},
                                            {password_hash, str(sv(p->password_hash()))},
                                            {nickname, str(sv(p->nickname()))},
                                            {email, str(sv(p->email()))},
                                            {created_at, i64(ts)}});
        break;
      }
      case fb::Event::ProfileUpdated: {
        auto* p = e.event_as_ProfileUpdated();
        using namespace profile_col;
        std::vector<Value> key{u64(p->user_id())};
        if (p->nickname()) w.profiles.patch(key, {{nickname, str(sv(p->nickname()))}});
        if (p->email()) w.profiles.patch(key, {{email, str(sv(p->email()))}});
        if (p->avatar_url()) w.profiles.patch(key, {{avatar_url, str(sv(p->avatar_url()))}});
        if (p->signature()) w.profiles.patch(key, {{signature, str(sv(p->signature()))}});
        w.profiles.patch(std::move(key), {{updated_at, i64(ts)}});
        break;
      }
      case fb::Event::SettingsUpdated: {
        auto* p = e.event_as_SettingsUpdated();
        using namespace profile_col;
        std::vector<Value> key{u64(p->user_id())};
        if (auto v = p->allow_search(); v.has_value()) w.profiles.patch(key, {{allow_search, i64(v.value() ? 1 : 0)}});
        if (auto v = p->message_policy(); v.has_value()) {
          w.profiles.patch(key, {{message_policy, str(v.value() == fb::MessagePolicy::FriendsOnly ? "friends_only"
                                                                                                : "everyone")}});
        }
        if (auto v = p->push_enabled(); v.has_value()) w.profiles.patch(key, {{push_enabled, i64(v.value() ? 1 : 0)}});
        if (auto v = p->quiet_start_minute(); v.has_value()) w.profiles.patch(key, {{quiet_start_minute, i64(v.value())}});
        if (auto v = p->quiet_end_minute(); v.has_value()) w.profiles.patch(key, {{quiet_end_minute, i64(v.value())}});
        if (p->time_zone()) w.profiles.patch(key, {{profile_col::time_zone, str(sv(p->time_zone()))}});
        w.profiles.patch(key, {{updated_at, i64(ts)}});
        for (auto [list, flag] : {std::pair{p->muted(), 1}, std::pair{p->unmuted(), 0}}) {
          if (!list) continue;
          for (const auto* conv : *list) {
            w.conv_settings.patch({u64(p->user_id()), str(sv(conv))},
                                  {{ucs_col::muted, i64(flag)}, {ucs_col::updated_at, i64(ts)}});
          }
        }
        break;
      }
      case fb::Event::DeviceRegistered: {
        auto* p = e.event_as_DeviceRegistered();
        using namespace device_col;
        w.devices.patch({u64(p->user_id()), u64(p->device_id())},
                        {{platform, str(push_platform_name(p->platform()))},
                         {token, str(sv(p->token()))},
                         {app_id, str(sv(p->app_id()))},
                         {created_at, i64(ts)},
                         {removed, i64(0)}});
        break;
      }
      case fb::Event::DeviceRemoved: {
        auto* p = e.event_as_DeviceRemoved();
        w.devices.patch({u64(p->user_id()), u64(p->device_id())}, {{device_col::removed, i64(1)}});
        break;
      }
      case fb::Event::RefreshTokenRevoked: {  // a logout removes the devices of its session (schema 7)
        auto* p = e.event_as_RefreshTokenRevoked();
        if (p->removed_devices()) {
          for (uint64_t device : *p->removed_devices()) {
            w.devices.patch({u64(p->user_id()), u64(device)}, {{device_col::removed, i64(1)}});
          }
        }
        break;
      }
      case fb::Event::FriendRequested: {
        auto* p = e.event_as_FriendRequested();
        friend_status(w, p->from(), p->to(), "pending_out", "pending_in", sv(p->note()), ts);
        break;
      }
      case fb::Event::FriendAccepted: {
        auto* p = e.event_as_FriendAccepted();
        friend_status(w, p->by(), p->requester(), "accepted", "accepted", std::nullopt, ts);
        break;
      }
      case fb::Event::FriendRejected: {
        auto* p = e.event_as_FriendRejected();
        friend_status(w, p->by(), p->requester(), "none", "none", "", ts);
        break;
      }
      case fb::Event::FriendRemoved: {
        auto* p = e.event_as_FriendRemoved();
        friend_status(w, p->by(), p->other(), "none", "none", "", ts);
        break;
      }
      case fb::Event::FriendGroupSet: {
        auto* p = e.event_as_FriendGroupSet();
        friend_flag(w, p->user_id(), p->friend_id(), friend_col::group_name, str(sv(p->group_name())), ts);
        break;
      }
      case fb::Event::UserBlocked: {
        auto* p = e.event_as_UserBlocked();
        friend_flag(w, p->by(), p->blocked(), friend_col::blocked, i64(1), ts);
        break;
      }
      case fb::Event::UserUnblocked: {
        auto* p = e.event_as_UserUnblocked();
        friend_flag(w, p->by(), p->unblocked(), friend_col::blocked, i64(0), ts);
        break;
      }
      case fb::Event::GroupCreated: {
        auto* p = e.event_as_GroupCreated();
        w.groups.patch({u64(p->group_id())}, {{group_col::name, str(sv(p->name()))},
                                             {group_col::description, str(sv(p->description()))},
                                             {group_col::owner_id, u64(p->owner())},
                                             {group_col::created_at, i64(ts)}});
        group_settings(w, p->group_id(), *p);
        member(w, p->group_id(), p->owner(), "owner", 0, ts, e.seq());
        if (p->members()) {
          for (uint64_t m : *p->members()) {
            if (m != p->owner()) member(w, p->group_id(), m, "member", p->owner(), ts, e.seq());
          }
        }
        break;
      }
      case fb::Event::GroupSettingsChanged: {
        if (!ref || ref->kind != StreamKind::group) break;
        // An upsert of the settings alone could not insert (the group's other columns have no
        // defaults), and the row exists: write what is pending, then update it in SQL, in order,
        // inside this transaction.
        auto* p = e.event_as_GroupSettingsChanged();
        w.flush(c);
        if (auto v = p->join_policy()) {
          auto& st = c.prepare("UPDATE `groups` SET join_policy = ? WHERE group_id = ?");
          st.setString(1, sql::SQLString(std::string(join_policy_name(*v))));
          st.setUInt64(2, ref->a);
          st.executeUpdate();
        }
        if (auto v = p->history()) {
          auto& st = c.prepare("UPDATE `groups` SET history = ? WHERE group_id = ?");
          st.setString(1, sql::SQLString(std::string(history_rule_name(*v))));
          st.setUInt64(2, ref->a);
          st.executeUpdate();
        }
        break;
      }
      case fb::Event::MemberJoined: {
        auto* p = e.event_as_MemberJoined();
        if (ref && ref->kind == StreamKind::group) {
          member(w, ref->a, p->user_id(), "member", p->invited_by(), ts, e.seq());
        }
        break;
      }
      case fb::Event::MemberLeft:
      case fb::Event::MemberRemoved: {
        if (!ref || ref->kind != StreamKind::group) break;
        bool left = e.event_type() == fb::Event::MemberLeft;
        uint64_t u = left ? e.event_as_MemberLeft()->user_id() : e.event_as_MemberRemoved()->user_id();
        w.members.patch({u64(ref->a), u64(u)},
                        {{member_col::status, str(left ? "left" : "removed")}, {member_col::updated_at, i64(ts)}});
        if (auto* r = e.event_as_MemberRemoved(); r && r->ban()) {
          w.members.patch({u64(ref->a), u64(u)}, {{member_col::banned, i64(1)},
                                                  {member_col::banned_by, u64(r->by())},
                                                  {member_col::banned_at, i64(ts)}});
        }
        break;
      }
      case fb::Event::MemberUnbanned: {
        if (!ref || ref->kind != StreamKind::group) break;
        w.members.patch({u64(ref->a), u64(e.event_as_MemberUnbanned()->user_id())},
                        {{member_col::banned, i64(0)}, {member_col::updated_at, i64(ts)}});
        break;
      }
      case fb::Event::RoleChanged: {
        if (!ref || ref->kind != StreamKind::group) break;
        auto* p = e.event_as_RoleChanged();
        if (p->role() == fb::Role::Owner) {
          // Ownership moves and the old owner stays an admin: that needs the current owner, so
          // write what is pending and demote in SQL, in order, inside this transaction.
          w.flush(c);
          auto& demote = c.prepare(
              "UPDATE group_members gm JOIN `groups` g ON g.group_id = gm.group_id AND g.owner_id = gm.user_id "
              "SET gm.role = 'admin', gm.updated_at = ? WHERE gm.group_id = ? AND gm.user_id <> ?");
          demote.setInt64(1, ts);
          demote.setUInt64(2, ref->a);
          demote.setUInt64(3, p->user_id());
          demote.executeUpdate();
          auto& owner = c.prepare("UPDATE `groups` SET owner_id = ? WHERE group_id = ?");
          owner.setUInt64(1, p->user_id());
          owner.setUInt64(2, ref->a);
          owner.executeUpdate();
        }
        w.members.patch({u64(ref->a), u64(p->user_id())},
                        {{member_col::role, str(role_name(p->role()))}, {member_col::updated_at, i64(ts)}});
        break;
      }
      case fb::Event::MessageRecalled:
        w.recalls.push_back(e.event_as_MessageRecalled()->message_id());
        break;
      case fb::Event::RetentionSet: {
        // The side it names (retention_sets_second_side()): a one-to-one's user, a group's own
        // (user 0).
        if (!ref || !is_conversation(ref->kind)) break;
        auto* p = e.event_as_RetentionSet();
        uint64_t side = ref->kind == StreamKind::single ? (retention_sets_second_side(*ref, p->by()) ? ref->b : ref->a) : 0;
        Value keep = p->keep_days() ? u64(*p->keep_days()) : Value();
        w.retention.patch({str(sv(e.stream())), u64(side)},
                          {{retention_col::keep_days, std::move(keep)}, {retention_col::set_seq, u64(e.seq())}});
        break;
      }
      case fb::Event::MessagesExpired: {
        // Expiry (schema 9): the conversation's rows at or below through_seq go, with their
        // search tokens, after what is pending (rows of this batch included), in this transaction.
        if (!ref || !is_conversation(ref->kind)) break;
        w.flush(c);
        const uint64_t through = e.event_as_MessagesExpired()->through_seq();
        auto& tokens = c.prepare(
            "DELETE t FROM message_tokens t JOIN messages m ON m.message_id = t.message_id "
            "WHERE m.conversation_id = ? AND m.seq_id <= ?");
        auto& rows = c.prepare("DELETE FROM messages WHERE conversation_id = ? AND seq_id <= ?");
        for (sql::PreparedStatement* st : {&tokens, &rows}) {
          st->setString(1, std::string(sv(e.stream())));
          st->setUInt64(2, through);
          st->executeUpdate();
        }
        break;
      }
      default: break;
    }
    if (!ref || !is_conversation(ref->kind)) return;
    timeline::Row row;
    if (timeline::row_of(e, item.text, item.erased, row)) {
      using namespace msg_col;
      if (row.type != "system" && !row.erased) {
        tokenize(row.content, w.tokens, kMaxTokensPerMessage);
        for (std::string_view t : w.tokens.tokens) w.message_tokens.patch({u64(row.message_id), str(t)}, {});
      }
      w.messages.patch({u64(row.message_id)}, {{conversation_id, str(row.conversation)},
                                               {seq_id, u64(row.seq)},
                                               {sender_id, u64(row.sender)},
                                               {content, Value(std::move(row.content))},
                                               {message_type, Value(std::move(row.type))},
                                               {client_msg_id, str(row.client_msg_id)},
                                               {msg_col::created_at, i64(row.created_at)},
                                               {recalled, i64(0)},
                                               {erased, i64(row.erased ? 1 : 0)}});
      const char* type = ref->kind == StreamKind::single ? "single" : ref->kind == StreamKind::group ? "group" : "world";
      w.conversations.patch({str(row.conversation)},
                            {{conv_col::type, str(type)},
                             {conv_col::user_lo, u64(ref->kind == StreamKind::single ? ref->a : 0)},
                             {conv_col::user_hi, u64(ref->kind == StreamKind::single ? ref->b : 0)},
                             {conv_col::group_id, u64(ref->kind == StreamKind::group ? ref->a : 0)},
                             {conv_col::updated_at, i64(ts)},
                             {conv_col::last_seq, u64(row.seq)},
                             {conv_col::created_at, i64(ts)}});
    }
    moves.clear();
    timeline::pointer_moves(e, *ref, moves);
    for (const auto& m : moves) {
      // A raise to 0 only names a participant (the Redis model keeps those); here a missing row
      // reads as 0 and participants come from conversations and group_members.
      if (m.kind != timeline::PointerMove::Kind::raise || m.seq == 0) continue;
      w.read_pointers.patch({u64(m.user), str(sv(e.stream()))}, {{rp_col::updated_at, i64(ts)}, {rp_col::read_seq, u64(m.seq)}});
    }
  }

  static void member(BatchWriter& w, uint64_t group, uint64_t user, const char* role, uint64_t invited_by, int64_t ts,
                     uint64_t seq) {
    using namespace member_col;
    w.members.patch({u64(group), u64(user)}, {{member_col::role, str(role)},
                                              {status, str("active")},
                                              {member_col::invited_by, u64(invited_by)},
                                              {joined_at, i64(ts)},
                                              {updated_at, i64(ts)},
                                              {joined_seq, u64(seq)}});
  }

  // The settings GroupCreated carries; absent ones (a group created before schema 3) keep the
  // columns' defaults.
  static void group_settings(BatchWriter& w, uint64_t group, const fb::GroupCreated& ev) {
    if (auto p = ev.join_policy()) w.groups.patch({u64(group)}, {{group_col::join_policy, str(join_policy_name(*p))}});
    if (auto h = ev.history()) w.groups.patch({u64(group)}, {{group_col::history, str(history_rule_name(*h))}});
  }

  // ---- connections ----

  Result<std::unique_ptr<Conn>> new_conn() {
    auto c = mysql::connect(config_, true);
    IMLOG_TRY(c);
    auto conn = std::make_unique<Conn>();
    conn->c = std::move(*c);
    conn->generation = generation_.load();
    return conn;
  }

  // Brings a connection up to date after drop(): the database was re-created, so select it again
  // and forget statements prepared against the old tables.
  void refresh(Conn& c) {
    uint64_t g = generation_.load();
    if (c.generation == g) return;
    c.stmts.clear();
    c.c->setSchema(config_.database);
    c.generation = g;
  }

  // After drop(), the next use migrates a fresh database.
  Status ensure_schema() {
    std::lock_guard lock(schema_mu_);
    if (!dropped_) return {};
    IMLOG_TRY(migrate_mysql(config_));
    dropped_ = false;
    ++generation_;
    return {};
  }

  // Runs f on the writer connection (caller holds writer_mu_), reconnecting a lost one once.
  template <class T, class F>
  Result<T> with_writer(const std::string& what, F&& f) {
    for (int attempt = 0;; ++attempt) {
      if (!writer_ || writer_->broken) {
        auto w = new_conn();
        IMLOG_TRY(w);
        writer_ = std::move(*w);
        try {
          writer_->c->setAutoCommit(false);
        } catch (const sql::SQLException& e) {
          writer_.reset();
          return tl::unexpected(mysql::to_error(e, config_, what));
        }
      }
      bool was_fresh = writer_->fresh;
      writer_->fresh = false;
      try {
        refresh(*writer_);
        return f(*writer_);
      } catch (const sql::SQLException& e) {
        bool lost = mysql::connection_lost(e);
        if (lost) {
          writer_->broken = true;
        } else {
          try {
            writer_->c->rollback();
          } catch (const sql::SQLException&) {
            writer_->broken = true;
          }
        }
        // A connection that sat idle may have been closed by the server: retry once on a new one.
        if (lost && !was_fresh && attempt == 0) continue;
        return tl::unexpected(mysql::to_error(e, config_, what));
      }
    }
  }

  // Runs f on a pooled connection, retrying once on a fresh one when a reused one was lost.
  template <class T, class F>
  Result<T> query(const std::string& what, F&& f) {
    IMLOG_TRY(ensure_schema());
    for (int attempt = 0;; ++attempt) {
      auto conn = acquire();
      IMLOG_TRY(conn);
      bool was_fresh = (*conn)->fresh;
      (*conn)->fresh = false;
      try {
        refresh(**conn);
        T out = f(**conn);
        release(std::move(*conn));
        return out;
      } catch (const sql::SQLException& e) {
        bool lost = mysql::connection_lost(e);
        if (lost) (*conn)->broken = true;
        release(std::move(*conn));
        if (lost && !was_fresh && attempt == 0) continue;
        return tl::unexpected(mysql::to_error(e, config_, what));
      }
    }
  }

  Result<std::unique_ptr<Conn>> acquire() {
    mysql::register_thread();
    {
      std::unique_lock lock(pool_mu_);
      int32_t cap = std::max(1, config_.pool_size);
      pool_cv_.wait(lock, [&] { return !idle_.empty() || open_ < cap; });
      if (!idle_.empty()) {
        auto c = std::move(idle_.back());
        idle_.pop_back();
        return c;
      }
      ++open_;
    }
    auto c = new_conn();
    if (!c) {
      std::lock_guard lock(pool_mu_);
      --open_;
      pool_cv_.notify_one();
    }
    return c;
  }

  void release(std::unique_ptr<Conn> c) {
    std::lock_guard lock(pool_mu_);
    if (c->broken) {
      --open_;
    } else {
      idle_.push_back(std::move(c));
    }
    pool_cv_.notify_one();
  }

  MysqlConfig config_;
  std::mutex schema_mu_;  // before writer_mu_ when both are taken
  bool dropped_ = false;
  std::atomic<uint64_t> generation_{1};
  std::mutex writer_mu_;
  std::unique_ptr<Conn> writer_;
  std::mutex pool_mu_;
  std::condition_variable pool_cv_;
  std::vector<std::unique_ptr<Conn>> idle_;
  int32_t open_ = 0;
};

// ---- dump ---------------------------------------------------------------------------------------

// "table|<key parts>": numbers zero-padded to 20 digits so keys sort as the rows do.
void append_key_part(std::string& key, Kind kind, const sql::ResultSet& rs, uint32_t col) {
  key += '|';
  if (kind == Kind::str) {
    key += get_str(rs, col);
  } else if (kind == Kind::u64) {
    key += pad20(rs.getUInt64(col));
  } else {
    key += std::to_string(rs.getInt64(col));
  }
}

// The row's other columns as one JSON object, in the table's column order.
void append_value(std::string& value, const ColumnSpec& c, const sql::ResultSet& rs, uint32_t col) {
  value += value.empty() ? "{" : ",";
  timeline::append_json_string(value, c.name);
  value += ':';
  if (rs.isNull(col)) {
    value += "null";
  } else if (c.kind == Kind::str) {
    timeline::append_json_string(value, get_str(rs, col));
  } else if (c.kind == Kind::u64) {
    value += std::to_string(rs.getUInt64(col));
  } else {
    value += std::to_string(rs.getInt64(col));
  }
}

Status MysqlModelImpl::dump(const RowVisitor& visit) {
  std::vector<const TableSpec*> tables;
  for (const auto* t : kWriteOrder) {
    if (t->dumped) tables.push_back(t);
  }
  std::sort(tables.begin(), tables.end(), [](const TableSpec* a, const TableSpec* b) {
    return std::string(a->name) + "|" < std::string(b->name) + "|";
  });
  auto r = query<bool>("dumping the model", [&](Conn& c) {
    std::unique_ptr<sql::Statement> st(c.c->createStatement());
    st->execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY");
    struct Commit {
      sql::Statement& st;
      ~Commit() {
        try {
          st.execute("COMMIT");
        } catch (const sql::SQLException&) {
        }
      }
    } commit{*st};
    for (const TableSpec* t : tables) {
      std::string cols, order;
      for (const auto& k : t->key) {
        cols += (cols.empty() ? "" : ",") + quoted(k.name);
        order += (order.empty() ? "" : ",") + quoted(k.name);
      }
      for (const auto& col : t->cols) cols += "," + quoted(col.name);
      // Big tables are read in key order, page by page, by their first key column (a u64, so
      // SQL's order is the dump's). A full page holds back the rows of its last first-key value,
      // which the next page reads whole: a message's tokens never straddle two pages.
      const bool paged = t == &kMessages || t == &kMessageTokens;
      constexpr size_t kPage = 10000;
      std::string sql = "SELECT " + cols + " FROM " + quoted(t->name);
      if (paged) sql += " WHERE " + quoted(t->key[0].name) + " > ?";
      sql += " ORDER BY " + order;
      if (paged) sql += " LIMIT " + std::to_string(kPage);
      auto& ps = c.prepare(sql);
      std::vector<std::pair<std::string, std::string>> rows;
      std::vector<uint64_t> firsts;  // paged: each row's first key column
      uint64_t after = 0;
      for (bool more = true; more;) {
        more = false;
        if (paged) ps.setUInt64(1, after);
        std::unique_ptr<sql::ResultSet> rs(ps.executeQuery());
        while (rs->next()) {
          std::string key = t->name;
          uint32_t col = 1;
          for (const auto& k : t->key) append_key_part(key, k.kind, *rs, col++);
          std::string value;
          for (const auto& cs : t->cols) append_value(value, cs, *rs, col++);
          value += '}';
          if (paged) firsts.push_back(rs->getUInt64(1));
          rows.emplace_back(std::move(key), std::move(value));
        }
        if (!paged) break;
        size_t emit = rows.size();
        if (rows.size() == kPage && firsts.front() != firsts.back()) {
          more = true;
          while (firsts[emit - 1] == firsts.back()) --emit;
          after = firsts.back() - 1;
        }
        for (size_t i = 0; i < emit; ++i) {
          if (!visit(rows[i].first, rows[i].second)) return true;
        }
        rows.clear();
        firsts.clear();
      }
      if (paged) continue;
      // Key order is byte order, which for string keys is not SQL's order: sort.
      std::sort(rows.begin(), rows.end());
      for (const auto& [k, v] : rows) {
        if (!visit(k, v)) return true;
      }
    }
    return true;
  });
  if (!r) return tl::unexpected(r.error());
  return {};
}

}  // namespace

Result<std::unique_ptr<MysqlModel>> open_mysql_model(const MysqlConfig& config) {
  IMLOG_TRY(migrate_mysql(config));
  auto m = std::make_unique<MysqlModelImpl>(config);
  IMLOG_TRY(m->init());
  return std::unique_ptr<MysqlModel>(std::move(m));
}

}  // namespace imlog
