#pragma once
// Message search, shared by GET /api/v1/search/messages and the WebSocket `search` frame: the
// named conversation (if any) authorised as every read is (authorize_read: 403 when the user may
// not read it), then QueryService::search_messages, which keeps to the history rule. Runs on the
// caller's thread — a query worker (the REST handler's, or the one the frame was posted to).

#include <functional>
#include <string>

#include "imlog/projections/query.h"
#include "json.h"
#include "services.h"

namespace imlog::gw {

// The answer: results, or the error to give (HTTP status, code, message).
struct SearchAnswer {
  unsigned status = 200;
  std::string code;
  std::string message;
  SearchResults results;
};

// `request` is checked already (check_search_text, check_conversation, limit). `done` runs once,
// on any thread.
void find_messages(Services& svc, SearchRequest request, std::function<void(SearchAnswer)> done);

// "results": [{message, snippet: [{text, hit}]}], "next_before": "<id>" | null — into an open object.
void write_search_results(JsonOut& j, const SearchResults& results);

}  // namespace imlog::gw
