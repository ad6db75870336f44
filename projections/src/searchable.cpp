// is_searchable() (query.h) alone: the gateway's frame checks call it, and the WebSocket fuzzer
// compiles it without the query service and the read models behind it.

#include "imlog/projections/query.h"
#include "text_index.h"

namespace imlog {

bool is_searchable(std::string_view text) { return parse_search_query(text).searchable(); }

}  // namespace imlog
