// The status page and /status.json; see status_page.hpp.
#include "monitoring/status_page.hpp"

namespace ddactor {

namespace {

// Everything the page needs is in it. Values from the JSON reach the document only through
// textContent and attributes set with setAttribute (never as markup), so a peer's swarm id or
// an error text cannot inject anything; the Content-Security-Policy below forbids every other
// source anyway.
constexpr std::string_view page = R"html(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ddactor swarm</title>
<link rel="icon" href="data:,">
<style>
  :root { color-scheme: light dark; --line: #c8c8c8; --muted: #555; --bad: #a30000; --warn: #7a4500; }
  @media (prefers-color-scheme: dark) {
    :root { --line: #444; --muted: #aaa; --bad: #ff8a80; --warn: #ffcc80; }
  }
  body { font-family: system-ui, sans-serif; margin: 1.5rem; line-height: 1.4; }
  h1 { font-size: 1.4rem; margin: 0 0 .25rem; }
  h2 { font-size: 1.1rem; margin: 1.75rem 0 .5rem; }
  p { margin: .25rem 0; }
  .muted { color: var(--muted); }
  table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
  caption { text-align: left; color: var(--muted); padding-bottom: .25rem; }
  th, td { padding: .3rem .7rem; border-bottom: 1px solid var(--line); text-align: left;
           white-space: nowrap; }
  th { font-weight: 600; }
  td.number { text-align: right; }
  tr.self td { font-weight: 600; }
  abbr { text-decoration: none; font-family: ui-monospace, monospace; }
  .suspected, .failed { color: var(--bad); }
  .alone { color: var(--warn); }
  #update.error { color: var(--bad); font-weight: 600; }
  .scroll { overflow-x: auto; }
</style>
</head>
<body data-state="loading">
<header>
  <h1>ddactor swarm</h1>
  <p id="summary">Loading the swarm&hellip;</p>
  <p id="update" role="status" aria-live="polite" class="muted">Waiting for the first update.</p>
</header>
<main>
  <section aria-labelledby="peers-title">
    <h2 id="peers-title">Peers</h2>
    <div class="scroll">
      <table id="peers">
        <caption>Every peer this one sees, this one in bold. Role: its part in this peer's last round.</caption>
        <thead><tr>
          <th scope="col">Peer</th><th scope="col">Address</th><th scope="col">Swarm</th>
          <th scope="col">Epoch</th><th scope="col">Samples/s</th><th scope="col">Role</th>
          <th scope="col">Last seen</th><th scope="col">State</th><th scope="col">Reachability</th>
        </tr></thead>
        <tbody></tbody>
      </table>
    </div>
  </section>
  <section aria-labelledby="rounds-title">
    <h2 id="rounds-title">Recent rounds</h2>
    <p id="no-rounds" class="muted" hidden>No averaging rounds yet.</p>
    <div class="scroll">
      <table id="rounds">
        <caption>This peer's last averaging rounds, newest first.</caption>
        <thead><tr>
          <th scope="col">Epoch</th><th scope="col">Result</th><th scope="col">Group</th>
          <th scope="col">Leader</th><th scope="col">Duration</th><th scope="col">Sent</th>
          <th scope="col">Received</th><th scope="col">Ended</th><th scope="col">Detail</th>
        </tr></thead>
        <tbody></tbody>
      </table>
    </div>
  </section>
</main>
<noscript><p>This page needs JavaScript; the same data is at <a href="status.json">status.json</a>.</p></noscript>
<script>
"use strict";
(function () {
  var refreshMilliseconds = 2000;
  var update = document.getElementById("update");

  function showError(text) {
    document.body.setAttribute("data-state", "error");
    update.className = "error";
    update.textContent = text;
  }
  // A fault of this page shows on it, and is counted where a later update does not clear it
  // (the test's headless browser reads the count).
  window.addEventListener("error", function (event) {
    var count = Number(document.body.getAttribute("data-page-errors") || "0") + 1;
    document.body.setAttribute("data-page-errors", String(count));
    showError("Page error: " + event.message);
  });

  function dash(value) { return value === null || value === undefined ? "\u2013" : String(value); }
  function fixed(value, digits) {
    return typeof value === "number" ? value.toFixed(digits) : "\u2013";
  }
  function seconds(value) {
    if (typeof value !== "number") return "\u2013";
    if (value < 10) return value.toFixed(1) + " s";
    if (value < 120) return value.toFixed(0) + " s";
    if (value < 7200) return (value / 60).toFixed(0) + " min";
    return (value / 3600).toFixed(1) + " h";
  }
  function bytes(value) {
    if (typeof value !== "number") return "\u2013";
    var units = ["B", "KiB", "MiB", "GiB", "TiB"];
    var unit = 0;
    while (value >= 1024 && unit + 1 < units.length) { value /= 1024; unit += 1; }
    return (unit === 0 ? value.toFixed(0) : value.toFixed(1)) + " " + units[unit];
  }
  function cell(row, text, className) {
    var td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }
  function peerCell(row, id) {
    var td = document.createElement("td");
    var abbr = document.createElement("abbr");
    abbr.setAttribute("title", String(id));
    abbr.textContent = String(id).slice(0, 8);
    td.appendChild(abbr);
    row.appendChild(td);
  }
  function replaceRows(table, rows) {
    var body = table.querySelector("tbody");
    while (body.firstChild) body.removeChild(body.firstChild);
    rows.forEach(function (row) { body.appendChild(row); });
  }

  function render(status) {
    var peers = Array.isArray(status.peers) ? status.peers : [];
    var rounds = Array.isArray(status.rounds) ? status.rounds : [];
    var summary = document.getElementById("summary");
    if (!status.peer_id) {
      summary.textContent = "This peer is not part of a swarm (network.listen is not set); it is " +
        dash(status.activity) + ".";
    } else {
      var rate = 0;
      var epoch = null;
      peers.forEach(function (p) {
        if (typeof p.samples_per_second === "number") rate += p.samples_per_second;
        if (p.self) epoch = p.epoch;
      });
      summary.textContent = "Peer " + String(status.peer_id).slice(0, 8) + " at " +
        dash(status.address) + ", swarm \u201c" + dash(status.swarm_id) + "\u201d, " +
        (epoch === null || epoch === undefined ? "no epoch yet" : "epoch " + epoch) + ", " +
        dash(status.activity) + ". " + peers.length + (peers.length === 1 ? " peer" : " peers") +
        " in view, " + rate.toFixed(1) + " samples/s together.";
    }
    replaceRows(document.getElementById("peers"), peers.map(function (p) {
      var row = document.createElement("tr");
      row.setAttribute("data-peer-id", String(p.peer_id));
      if (p.self) row.className = "self";
      peerCell(row, p.peer_id);
      cell(row, dash(p.address));
      cell(row, dash(p.swarm_id));
      cell(row, dash(p.epoch), "number");
      cell(row, fixed(p.samples_per_second, 1), "number");
      cell(row, p.role === "unknown" ? "\u2013" : dash(p.role), p.role === "alone" ? "alone" : "");
      cell(row, p.self ? "\u2013" : (typeof p.last_seen_seconds === "number"
        ? seconds(p.last_seen_seconds) + " ago" : "never"), "number");
      cell(row, p.self ? "this peer" : (p.suspected ? "suspected" : "alive"),
           p.suspected ? "suspected" : "");
      cell(row, dash(p.reachability));
      return row;
    }));
    document.getElementById("no-rounds").hidden = rounds.length !== 0;
    document.getElementById("rounds").hidden = rounds.length === 0;
    replaceRows(document.getElementById("rounds"), rounds.map(function (r) {
      var row = document.createElement("tr");
      cell(row, dash(r.epoch), "number");
      cell(row, dash(r.result), r.result === "averaged" ? "" : String(r.result));
      cell(row, dash(r.group_size), "number");
      if (r.leader_id) peerCell(row, r.leader_id); else cell(row, "\u2013");
      cell(row, fixed(r.seconds, 2) + " s", "number");
      cell(row, bytes(r.bytes_sent), "number");
      cell(row, bytes(r.bytes_received), "number");
      cell(row, seconds(r.ended_seconds_ago) + " ago", "number");
      cell(row, r.detail ? String(r.detail) : "\u2013");
      return row;
    }));
  }

  function refresh() {
    fetch("status.json", { cache: "no-store" })
      .then(function (response) {
        if (!response.ok) throw new Error("the peer answered HTTP " + response.status);
        return response.json();
      })
      .then(function (status) {
        render(status);
        document.body.setAttribute("data-state", "ok");
        update.className = "muted";
        update.textContent = "Updated " + new Date().toLocaleTimeString() +
          "; refreshes every " + refreshMilliseconds / 1000 + " s.";
      })
      .catch(function (error) {
        showError("Cannot update (" + error.message + "); retrying every " +
                  refreshMilliseconds / 1000 + " s.");
      })
      .then(function () { window.setTimeout(refresh, refreshMilliseconds); });
  }
  refresh();
})();
</script>
</body>
</html>
)html";

// The page may run its own inline script and style and fetch from its own origin, nothing else.
constexpr const char* page_policy =
  "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
  "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'";

} // namespace

std::string_view status_page_html() { return page; }

void add_status_pages(metrics_http_server& server, const swarm_status_board& board) {
  server.add_page("/", [](const http_request&) {
    http_response response;
    response.content_type = "text/html; charset=utf-8";
    response.body = std::string(page);
    response.headers = {{"Content-Security-Policy", page_policy},
                        {"X-Content-Type-Options", "nosniff"},
                        {"Cache-Control", "no-cache"}};
    return response;
  });
  server.add_page("/status.json", [&board](const http_request&) {
    http_response response;
    response.content_type = "application/json";
    response.body = render_swarm_status_json(board.snapshot());
    response.headers = {{"Cache-Control", "no-store"}, {"X-Content-Type-Options", "nosniff"}};
    return response;
  });
}

} // namespace ddactor
