#pragma once
// A WebSocket connection at /ws (docs/api/websocket.md), created by HttpSession once the upgrade
// request carried a valid access token. Private to gateway/src; includes Beast.

#include <cstdint>
#include <string>

#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include "services.h"

namespace imlog::gw {

// Takes the connection over: completes the handshake, then runs the session on the stream's strand
// until either side closes it.
void start_ws_session(Services& svc, boost::beast::tcp_stream&& stream,
                      boost::beast::http::request<boost::beast::http::string_body>&& upgrade, uint64_t user_id,
                      std::string subprotocol);

}  // namespace imlog::gw
