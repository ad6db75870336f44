#include "imlog/projections/query_grpc.h"

#include <grpcpp/grpcpp.h>

#include "query.grpc.pb.h"

namespace imlog {
namespace {

namespace pb = ::imlog::query::v1;

// ---- views ⇄ messages -----------------------------------------------------------------------------

void to_pb(const MessageView& v, pb::Message* m) {
  m->set_message_id(v.message_id);
  m->set_conversation_id(v.conversation_id);
  m->set_seq_id(v.seq_id);
  m->set_sender_id(v.sender_id);
  m->set_content(v.content);
  m->set_message_type(v.message_type);
  m->set_client_msg_id(v.client_msg_id);
  m->set_created_at(v.created_at);
  m->set_recalled(v.recalled);
  m->set_erased(v.erased);
}

MessageView from_pb(const pb::Message& m) {
  return MessageView{m.message_id(), m.conversation_id(), m.seq_id(),       m.sender_id(), m.content(),
                     m.message_type(), m.client_msg_id(),  m.created_at(), m.recalled(), m.erased()};
}

void to_pb(const UserView& v, pb::User* u) {
  u->set_user_id(v.user_id);
  u->set_username(v.username);
  u->set_nickname(v.nickname);
  u->set_avatar_url(v.avatar_url);
  u->set_signature(v.signature);
  u->set_email(v.email);
  u->set_allow_search(v.allow_search);
  u->set_message_policy(v.message_policy);
  u->set_push_enabled(v.push_enabled);
  u->set_quiet_start_minute(v.quiet_start_minute);
  u->set_quiet_end_minute(v.quiet_end_minute);
  for (const auto& m : v.muted) u->add_muted(m);
  u->set_created_at(v.created_at);
  u->set_time_zone(v.time_zone);
  for (const auto& d : v.devices) {
    auto* out = u->add_devices();
    out->set_device_id(d.device_id);
    out->set_platform(d.platform);
    out->set_token(d.token);
    out->set_app_id(d.app_id);
    out->set_created_at(d.created_at);
  }
}

UserView from_pb(const pb::User& u) {
  UserView v;
  v.user_id = u.user_id();
  v.username = u.username();
  v.nickname = u.nickname();
  v.avatar_url = u.avatar_url();
  v.signature = u.signature();
  v.email = u.email();
  v.allow_search = u.allow_search();
  v.message_policy = u.message_policy();
  v.push_enabled = u.push_enabled();
  v.quiet_start_minute = u.quiet_start_minute();
  v.quiet_end_minute = u.quiet_end_minute();
  v.muted.assign(u.muted().begin(), u.muted().end());
  v.created_at = u.created_at();
  v.time_zone = u.time_zone();
  for (const auto& d : u.devices()) {
    v.devices.push_back(DeviceView{d.device_id(), d.platform(), d.token(), d.app_id(), d.created_at()});
  }
  return v;
}

void to_pb(const ConversationView& v, pb::Conversation* c) {
  c->set_conversation_id(v.conversation_id);
  c->set_type(v.type);
  c->set_last_seq(v.last_seq);
  c->set_read_seq(v.read_seq);
  c->set_unread(v.unread);
  if (v.last_message) to_pb(*v.last_message, c->mutable_last_message());
  c->set_updated_at(v.updated_at);
  c->set_title(v.title);
  c->set_peer_id(v.peer_id);
}

ConversationView from_pb(const pb::Conversation& c) {
  ConversationView v;
  v.conversation_id = c.conversation_id();
  v.type = c.type();
  v.last_seq = c.last_seq();
  v.read_seq = c.read_seq();
  v.unread = c.unread();
  if (c.has_last_message()) v.last_message = from_pb(c.last_message());
  v.updated_at = c.updated_at();
  v.title = c.title();
  v.peer_id = c.peer_id();
  return v;
}

void to_pb(const GroupView& v, pb::Group* g) {
  g->set_group_id(v.group_id);
  g->set_name(v.name);
  g->set_description(v.description);
  g->set_owner_id(v.owner_id);
  g->set_member_count(v.member_count);
  g->set_created_at(v.created_at);
  g->set_join_policy(v.join_policy);
  g->set_history(v.history);
}

grpc::Status to_status(const Error& e) {
  return grpc::Status(e.retryable() ? grpc::StatusCode::UNAVAILABLE : grpc::StatusCode::INTERNAL, e.to_string());
}

// Runs a ReadModel call and fills the reply, or returns its error as a gRPC status.
template <class R, class Fill>
grpc::Status answer(R&& result, Fill&& fill) {
  if (!result) return to_status(result.error());
  fill(*result);
  return grpc::Status::OK;
}

// ---- the server -------------------------------------------------------------------------------------

class Service final : public pb::Query::Service {
 public:
  explicit Service(ReadModel& m) : m_(m) {}
  using Ctx = grpc::ServerContext;

  grpc::Status History(Ctx*, const pb::HistoryRequest* q, pb::HistoryReply* r) override {
    HistoryRange range{q->after_seq(), q->before_seq(), q->forward(), q->limit()};
    return answer(m_.history(q->conversation_id(), range),
                  [&](const HistoryPage& p) {
                    for (const auto& msg : p.messages) to_pb(msg, r->add_messages());
                    r->set_has_more(p.has_more);
                  });
  }
  grpc::Status GetMessage(Ctx*, const pb::MessageRequest* q, pb::MessageReply* r) override {
    return answer(m_.message(q->message_id()), [&](const std::optional<MessageView>& v) {
      r->set_found(v.has_value());
      if (v) to_pb(*v, r->mutable_message());
    });
  }
  grpc::Status Conversations(Ctx*, const pb::ConversationsRequest* q, pb::ConversationsReply* r) override {
    return answer(m_.conversations(q->user_id()), [&](const std::vector<ConversationView>& list) {
      for (const auto& c : list) to_pb(c, r->add_conversations());
    });
  }
  grpc::Status GetUser(Ctx*, const pb::UserRequest* q, pb::UserReply* r) override {
    return answer(m_.user(q->user_id()), [&](const std::optional<UserView>& u) {
      r->set_found(u.has_value());
      if (u) to_pb(*u, r->mutable_user());
    });
  }
  grpc::Status GetCredentials(Ctx*, const pb::CredentialsRequest* q, pb::CredentialsReply* r) override {
    return answer(m_.credentials(q->username()), [&](const std::optional<Credentials>& c) {
      r->set_found(c.has_value());
      if (c) {
        r->set_user_id(c->user_id);
        r->set_password_hash(c->password_hash);
      }
    });
  }
  grpc::Status SearchUsers(Ctx*, const pb::SearchUsersRequest* q, pb::UsersReply* r) override {
    return answer(m_.search_users(q->prefix(), q->after_user_id(), q->limit()), [&](const std::vector<UserView>& us) {
      for (const auto& u : us) to_pb(u, r->add_users());
    });
  }
  grpc::Status GetGroup(Ctx*, const pb::GroupRequest* q, pb::GroupReply* r) override {
    return answer(m_.group(q->group_id()), [&](const std::optional<GroupView>& g) {
      r->set_found(g.has_value());
      if (g) to_pb(*g, r->mutable_group());
    });
  }
  grpc::Status Members(Ctx*, const pb::MembersRequest* q, pb::MembersReply* r) override {
    return answer(m_.members(q->group_id(), q->after_user_id(), q->limit()), [&](const std::vector<MemberView>& ms) {
      for (const auto& m : ms) {
        auto* out = r->add_members();
        out->set_user_id(m.user_id);
        out->set_role(m.role);
        out->set_joined_at(m.joined_at);
      }
    });
  }
  grpc::Status CanRead(Ctx*, const pb::CanReadRequest* q, pb::CanReadReply* r) override {
    return answer(m_.read_access(q->conversation_id(), q->user_id()), [&](const ReadAccess& a) {
      r->set_allowed(a.allowed);
      r->set_history(a.history);
      r->set_joined_seq(a.joined_seq);
    });
  }
  grpc::Status Bans(Ctx*, const pb::MembersRequest* q, pb::BansReply* r) override {
    return answer(m_.bans(q->group_id(), q->after_user_id(), q->limit()), [&](const std::vector<BanView>& bs) {
      for (const auto& b : bs) {
        auto* out = r->add_bans();
        out->set_user_id(b.user_id);
        out->set_banned_by(b.banned_by);
        out->set_banned_at(b.banned_at);
      }
    });
  }
  grpc::Status SearchMessages(Ctx*, const pb::SearchMessagesRequest* q, pb::MessagesReply* r) override {
    SearchRequest request{q->user_id(), q->text(), q->conversation_id(), q->before_id(), q->limit()};
    return answer(m_.search_messages(request), [&](const SearchPage& page) {
      for (const auto& m : page.messages) to_pb(m, r->add_messages());
      r->set_next_before_id(page.next_before_id);
    });
  }
  grpc::Status Friends(Ctx*, const pb::UserIdRequest* q, pb::FriendsReply* r) override {
    return answer(m_.friends(q->user_id()), [&](const std::vector<FriendView>& fs) {
      for (const auto& f : fs) {
        auto* out = r->add_friends();
        out->set_user_id(f.user_id);
        out->set_status(f.status);
        out->set_note(f.note);
        out->set_group_name(f.group_name);
        out->set_since(f.since);
      }
    });
  }
  grpc::Status Blocked(Ctx*, const pb::UserIdRequest* q, pb::IdsReply* r) override {
    return answer(m_.blocked(q->user_id()), [&](const std::vector<uint64_t>& ids) {
      for (auto id : ids) r->add_ids(id);
    });
  }
  grpc::Status FriendGroups(Ctx*, const pb::UserIdRequest* q, pb::NamesReply* r) override {
    return answer(m_.friend_groups(q->user_id()), [&](const std::vector<std::string>& names) {
      for (const auto& n : names) r->add_names(n);
    });
  }
  grpc::Status Retention(Ctx*, const pb::RetentionRequest* q, pb::RetentionReply* r) override {
    return answer(m_.retention(q->conversation_id()), [&](const RetentionOverrides& o) {
      if (o.a) r->set_keep_a(*o.a);
      if (o.b) r->set_keep_b(*o.b);
    });
  }

 private:
  ReadModel& m_;
};

// ---- the client ---------------------------------------------------------------------------------------

class RemoteReadModel final : public ReadModel {
 public:
  RemoteReadModel(const std::string& target, std::chrono::milliseconds deadline)
      : target_(target),
        stub_(pb::Query::NewStub(grpc::CreateChannel(target, grpc::InsecureChannelCredentials()))),
        deadline_(deadline) {}

  Result<HistoryPage> history(std::string_view conv, const HistoryRange& range) override {
    pb::HistoryRequest q;
    q.set_conversation_id(std::string(conv));
    q.set_after_seq(range.after_seq);
    q.set_before_seq(range.before_seq);
    q.set_forward(range.forward);
    q.set_limit(range.limit);
    return call<pb::HistoryReply>(&pb::Query::Stub::History, q, [](const pb::HistoryReply& r) {
      HistoryPage p;
      for (const auto& m : r.messages()) p.messages.push_back(from_pb(m));
      p.has_more = r.has_more();
      return p;
    });
  }
  Result<std::optional<MessageView>> message(uint64_t id) override {
    pb::MessageRequest q;
    q.set_message_id(id);
    return call<pb::MessageReply>(&pb::Query::Stub::GetMessage, q, [](const pb::MessageReply& r) {
      return r.found() ? std::optional<MessageView>(from_pb(r.message())) : std::nullopt;
    });
  }
  Result<std::vector<ConversationView>> conversations(uint64_t user) override {
    pb::ConversationsRequest q;
    q.set_user_id(user);
    return call<pb::ConversationsReply>(&pb::Query::Stub::Conversations, q, [](const pb::ConversationsReply& r) {
      std::vector<ConversationView> out;
      for (const auto& c : r.conversations()) out.push_back(from_pb(c));
      return out;
    });
  }
  Result<std::optional<UserView>> user(uint64_t id) override {
    pb::UserRequest q;
    q.set_user_id(id);
    return call<pb::UserReply>(&pb::Query::Stub::GetUser, q, [](const pb::UserReply& r) {
      return r.found() ? std::optional<UserView>(from_pb(r.user())) : std::nullopt;
    });
  }
  Result<std::optional<Credentials>> credentials(std::string_view username) override {
    pb::CredentialsRequest q;
    q.set_username(std::string(username));
    return call<pb::CredentialsReply>(&pb::Query::Stub::GetCredentials, q, [](const pb::CredentialsReply& r) {
      return r.found() ? std::optional<Credentials>(Credentials{r.user_id(), r.password_hash()}) : std::nullopt;
    });
  }
  Result<std::vector<UserView>> search_users(std::string_view prefix, uint64_t after, uint32_t limit) override {
    pb::SearchUsersRequest q;
    q.set_prefix(std::string(prefix));
    q.set_after_user_id(after);
    q.set_limit(limit);
    return call<pb::UsersReply>(&pb::Query::Stub::SearchUsers, q, [](const pb::UsersReply& r) {
      std::vector<UserView> out;
      for (const auto& u : r.users()) out.push_back(from_pb(u));
      return out;
    });
  }
  Result<std::optional<GroupView>> group(uint64_t id) override {
    pb::GroupRequest q;
    q.set_group_id(id);
    return call<pb::GroupReply>(&pb::Query::Stub::GetGroup, q, [](const pb::GroupReply& r) {
      if (!r.found()) return std::optional<GroupView>();
      const auto& g = r.group();
      return std::optional<GroupView>(GroupView{g.group_id(), g.name(), g.description(), g.owner_id(), g.member_count(),
                                                g.created_at(), g.join_policy(), g.history()});
    });
  }
  Result<std::vector<MemberView>> members(uint64_t group, uint64_t after, uint32_t limit) override {
    pb::MembersRequest q;
    q.set_group_id(group);
    q.set_after_user_id(after);
    q.set_limit(limit);
    return call<pb::MembersReply>(&pb::Query::Stub::Members, q, [](const pb::MembersReply& r) {
      std::vector<MemberView> out;
      for (const auto& m : r.members()) out.push_back(MemberView{m.user_id(), m.role(), m.joined_at()});
      return out;
    });
  }
  Result<std::vector<BanView>> bans(uint64_t group, uint64_t after, uint32_t limit) override {
    pb::MembersRequest q;
    q.set_group_id(group);
    q.set_after_user_id(after);
    q.set_limit(limit);
    return call<pb::BansReply>(&pb::Query::Stub::Bans, q, [](const pb::BansReply& r) {
      std::vector<BanView> out;
      for (const auto& b : r.bans()) out.push_back(BanView{b.user_id(), b.banned_by(), b.banned_at()});
      return out;
    });
  }
  Result<ReadAccess> read_access(std::string_view conv, uint64_t user) override {
    pb::CanReadRequest q;
    q.set_conversation_id(std::string(conv));
    q.set_user_id(user);
    return call<pb::CanReadReply>(&pb::Query::Stub::CanRead, q, [](const pb::CanReadReply& r) {
      return ReadAccess{r.allowed(), r.history().empty() ? "all" : r.history(), r.joined_seq()};
    });
  }
  Result<SearchPage> search_messages(const SearchRequest& request) override {
    pb::SearchMessagesRequest q;
    q.set_user_id(request.user_id);
    q.set_text(request.text);
    q.set_limit(request.limit);
    q.set_conversation_id(request.conversation);
    q.set_before_id(request.before_id);
    return call<pb::MessagesReply>(&pb::Query::Stub::SearchMessages, q, [](const pb::MessagesReply& r) {
      SearchPage page;
      for (const auto& m : r.messages()) page.messages.push_back(from_pb(m));
      page.next_before_id = r.next_before_id();
      return page;
    });
  }
  Result<std::vector<FriendView>> friends(uint64_t user) override {
    pb::UserIdRequest q;
    q.set_user_id(user);
    return call<pb::FriendsReply>(&pb::Query::Stub::Friends, q, [](const pb::FriendsReply& r) {
      std::vector<FriendView> out;
      for (const auto& f : r.friends()) out.push_back(FriendView{f.user_id(), f.status(), f.note(), f.group_name(), f.since()});
      return out;
    });
  }
  Result<std::vector<uint64_t>> blocked(uint64_t user) override {
    pb::UserIdRequest q;
    q.set_user_id(user);
    return call<pb::IdsReply>(&pb::Query::Stub::Blocked, q, [](const pb::IdsReply& r) {
      return std::vector<uint64_t>(r.ids().begin(), r.ids().end());
    });
  }
  Result<std::vector<std::string>> friend_groups(uint64_t user) override {
    pb::UserIdRequest q;
    q.set_user_id(user);
    return call<pb::NamesReply>(&pb::Query::Stub::FriendGroups, q, [](const pb::NamesReply& r) {
      return std::vector<std::string>(r.names().begin(), r.names().end());
    });
  }
  Result<RetentionOverrides> retention(std::string_view conv) override {
    pb::RetentionRequest q;
    q.set_conversation_id(std::string(conv));
    return call<pb::RetentionReply>(&pb::Query::Stub::Retention, q, [](const pb::RetentionReply& r) {
      RetentionOverrides o;
      if (r.has_keep_a()) o.a = r.keep_a();
      if (r.has_keep_b()) o.b = r.keep_b();
      return o;
    });
  }

 private:
  template <class Reply, class Request, class Method, class Convert>
  auto call(Method method, const Request& q, Convert convert) -> Result<decltype(convert(std::declval<Reply>()))> {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + deadline_);
    Reply r;
    grpc::Status s = ((*stub_).*method)(&ctx, q, &r);
    if (!s.ok()) {
      bool retryable = s.error_code() == grpc::StatusCode::UNAVAILABLE ||
                       s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
      return fail(Error(std::make_error_code(std::errc::io_error),
                        "query service " + target_ + ": " + s.error_message(), retryable));
    }
    return convert(r);
  }

  std::string target_;
  std::unique_ptr<pb::Query::Stub> stub_;
  std::chrono::milliseconds deadline_;
};

}  // namespace

struct QueryServer::State {
  std::unique_ptr<Service> service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
};

QueryServer::QueryServer(std::unique_ptr<State> s) : state_(std::move(s)) {}
QueryServer::~QueryServer() { stop(); }

Result<std::unique_ptr<QueryServer>> QueryServer::start(ReadModel& model, const std::string& listen) {
  auto s = std::make_unique<State>();
  s->service = std::make_unique<Service>(model);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &s->port);
  builder.RegisterService(s->service.get());
  s->server = builder.BuildAndStart();
  if (!s->server || s->port == 0) {
    return fail(Error(std::make_error_code(std::errc::address_in_use),
                      "query service cannot listen on " + listen + ": check the address and that it is free"));
  }
  return std::unique_ptr<QueryServer>(new QueryServer(std::move(s)));
}

int QueryServer::port() const { return state_->port; }

void QueryServer::stop() {
  if (state_->server) {
    state_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    state_->server.reset();
  }
}

std::unique_ptr<ReadModel> connect_query_service(const std::string& target, std::chrono::milliseconds deadline) {
  return std::make_unique<RemoteReadModel>(target, deadline);
}

}  // namespace imlog
