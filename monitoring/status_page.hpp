#pragma once
// The status page of a peer on monitoring.listen: the swarm as it sees it, now, in any browser.
//   GET /status.json  the board's snapshot (monitoring/swarm_status.hpp's JSON)
//   GET /             one self-contained HTML page (inline CSS and script, nothing fetched from
//                     elsewhere) that fetches /status.json every 2 s and shows a table of the
//                     peers and one of the recent rounds
// Both answer from the board on the HTTP server's thread: a snapshot is a few copies under a
// mutex, never a message to a busy actor.

#include <string_view>

#include "monitoring/metrics_http_server.hpp"
#include "monitoring/swarm_status.hpp"

namespace ddactor {

/// The page served at "/".
std::string_view status_page_html();

/// Adds "/" and "/status.json" to `server` (before its start()). The board must outlive the
/// server's stop().
void add_status_pages(metrics_http_server& server, const swarm_status_board& board);

} // namespace ddactor
