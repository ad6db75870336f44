#include "search.h"

#include "commands.h"

namespace imlog::gw {
namespace {

void run_search(Services& svc, const SearchRequest& request, const std::function<void(SearchAnswer)>& done) {
  auto found = svc.query.search_messages(request);
  if (!found) return done(SearchAnswer{503, "unavailable", found.error().message(), {}});
  done(SearchAnswer{200, {}, {}, std::move(*found)});
}

}  // namespace

void find_messages(Services& svc, SearchRequest request, std::function<void(SearchAnswer)> done) {
  if (request.conversation.empty()) return run_search(svc, request, done);
  std::string conversation = request.conversation;
  authorize_read(svc, conversation, request.user_id,
                 [&svc, request = std::move(request), done = std::move(done)](Result<uint64_t> from) {
                   if (!from) return done(SearchAnswer{503, "unavailable", from.error().message(), {}});
                   if (*from == 0) {
                     return done(SearchAnswer{403, "forbidden",
                                              "you may not search " + request.conversation +
                                                  ": not a participant or member",
                                              {}});
                   }
                   run_search(svc, request, done);
                 });
}

void write_search_results(JsonOut& j, const SearchResults& results) {
  j.key("results").begin_array();
  for (const auto& r : results.results) {
    j.begin_object().key("message");
    write_message(j, r.message);
    j.key("snippet").begin_array();
    for (const auto& part : r.snippet) j.begin_object().field("text", part.text).field("hit", part.hit).end_object();
    j.end_array().end_object();
  }
  j.end_array();
  j.key("next_before");
  if (results.next_before_id != 0) j.id_str(results.next_before_id);
  else j.null();
}

}  // namespace imlog::gw
