#pragma once
// An HTTP/1.1 connection (keep-alive, one request at a time, body and header limits, timeouts),
// which hands itself to a WsSession when a request upgrades at /ws. Private to gateway/src.

#include <boost/asio/ip/tcp.hpp>

#include "services.h"

namespace imlog::gw {

// Runs the connection on the socket's executor (a strand made by the listener).
void start_http_session(Services& svc, boost::asio::ip::tcp::socket&& socket);

}  // namespace imlog::gw
