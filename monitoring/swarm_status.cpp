// The swarm as one peer sees it: JSON, text tables and the board; see swarm_status.hpp.
#include "monitoring/swarm_status.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

#include "runtime/version.hpp"

namespace ddactor {

namespace {

using json = nlohmann::json;

// Bounds on what a status document may hold, so that a hostile peer's answer stays small on the
// asking side: peers as many as a view may hold, strings as long as any field needs.
constexpr std::size_t max_status_peers = 4097;
constexpr std::size_t max_status_rounds = 64;
constexpr std::size_t max_group_members = 64;
constexpr std::size_t max_field_length = 512;
constexpr std::size_t max_detail_length = 2048;
// The width of one cell of a text table; longer texts are cut.
constexpr std::size_t max_cell_width = 60;

std::string short_id(std::string_view id) { return std::string(id.substr(0, 8)); }

double seconds_between(swarm_status_board::clock::time_point from,
                       swarm_status_board::clock::time_point to) {
  return std::max(0.0, std::chrono::duration<double>(to - from).count());
}

// --- JSON -------------------------------------------------------------------------------------

json optional_number(const std::optional<double>& value) {
  return value ? json(*value) : json(nullptr);
}

json peer_to_json(const peer_status& peer) {
  return json{
    {"peer_id", peer.peer_id},
    {"short_id", short_id(peer.peer_id)},
    {"address", peer.address},
    {"swarm_id", peer.swarm_id},
    {"self", peer.is_self},
    {"suspected", peer.suspected},
    {"epoch", peer.epoch ? json(*peer.epoch) : json(nullptr)},
    {"samples_per_second", optional_number(peer.samples_per_second)},
    {"role", to_string(peer.role)},
    {"last_seen_seconds", optional_number(peer.last_seen_seconds)},
    {"reachability", to_string(peer.reachability)},
  };
}

json round_to_json(const round_status& round) {
  return json{
    {"epoch", round.epoch},
    {"group_size", round.group_size},
    {"seconds", round.seconds},
    {"bytes_sent", round.bytes_sent},
    {"bytes_received", round.bytes_received},
    {"result", to_string(round.result)},
    {"leader_id", round.leader_id},
    {"members", round.members},
    {"detail", round.detail},
    {"ended_seconds_ago", round.ended_seconds_ago},
  };
}

[[noreturn]] void malformed(const std::string& where, const std::string& why) {
  throw swarm_status_error("not a ddactor status: " + where + " " + why);
}

const json* find_field(const json& object, const char* name) {
  auto it = object.find(name);
  return it == object.end() || it->is_null() ? nullptr : &*it;
}

std::string read_string(const json& object, const char* name, const std::string& where,
                        std::size_t max_length = max_field_length, bool required = false) {
  const json* value = find_field(object, name);
  if (value == nullptr) {
    if (required)
      malformed(where + name, "is missing");
    return {};
  }
  if (!value->is_string())
    malformed(where + name, "is not a string");
  const auto& text = value->get_ref<const std::string&>();
  if (text.size() > max_length)
    malformed(where + name, "is longer than " + std::to_string(max_length) + " bytes");
  return text;
}

bool read_bool(const json& object, const char* name, const std::string& where) {
  const json* value = find_field(object, name);
  if (value == nullptr)
    return false;
  if (!value->is_boolean())
    malformed(where + name, "is not true or false");
  return value->get<bool>();
}

std::optional<int64_t> read_integer(const json& object, const char* name,
                                    const std::string& where) {
  const json* value = find_field(object, name);
  if (value == nullptr)
    return std::nullopt;
  if (value->is_number_unsigned()) {
    auto x = value->get<uint64_t>();
    if (x > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      malformed(where + name, "is out of range");
    return static_cast<int64_t>(x);
  }
  if (!value->is_number_integer())
    malformed(where + name, "is not an integer");
  return value->get<int64_t>();
}

uint64_t read_unsigned(const json& object, const char* name, const std::string& where) {
  const json* value = find_field(object, name);
  if (value == nullptr)
    return 0;
  if (!value->is_number_unsigned())
    malformed(where + name, "is not a non-negative integer");
  return value->get<uint64_t>();
}

std::optional<double> read_number(const json& object, const char* name,
                                  const std::string& where) {
  const json* value = find_field(object, name);
  if (value == nullptr)
    return std::nullopt;
  if (!value->is_number())
    malformed(where + name, "is not a number");
  auto x = value->get<double>();
  if (!std::isfinite(x) || x < 0)
    malformed(where + name, "is not a finite non-negative number");
  return x;
}

template <class Enum, std::size_t N>
Enum read_enum(const json& object, const char* name, const std::string& where,
               const Enum (&values)[N], Enum fallback) {
  auto text = read_string(object, name, where);
  if (text.empty())
    return fallback;
  for (auto value : values)
    if (to_string(value) == text)
      return value;
  // A newer peer may know more; what this one cannot name stays unknown.
  return fallback;
}

peer_status peer_from_json(const json& object, const std::string& where) {
  if (!object.is_object())
    malformed(where, "is not an object");
  peer_status peer;
  peer.peer_id = read_string(object, "peer_id", where, max_field_length, true);
  peer.address = read_string(object, "address", where);
  peer.swarm_id = read_string(object, "swarm_id", where);
  peer.is_self = read_bool(object, "self", where);
  peer.suspected = read_bool(object, "suspected", where);
  peer.epoch = read_integer(object, "epoch", where);
  peer.samples_per_second = read_number(object, "samples_per_second", where);
  static const round_role roles[] = {round_role::unknown, round_role::leader,
                                     round_role::member, round_role::alone};
  peer.role = read_enum(object, "role", where, roles, round_role::unknown);
  peer.last_seen_seconds = read_number(object, "last_seen_seconds", where);
  static const peer_reachability reachabilities[] = {
    peer_reachability::unknown, peer_reachability::reachable, peer_reachability::unreachable};
  peer.reachability =
    read_enum(object, "reachability", where, reachabilities, peer_reachability::unknown);
  return peer;
}

round_status round_from_json(const json& object, const std::string& where) {
  if (!object.is_object())
    malformed(where, "is not an object");
  round_status round;
  round.epoch = read_integer(object, "epoch", where).value_or(0);
  auto group = read_integer(object, "group_size", where).value_or(1);
  if (group < 0 || group > static_cast<int64_t>(max_group_members))
    malformed(where + "group_size", "is out of range");
  round.group_size = static_cast<int32_t>(group);
  round.seconds = read_number(object, "seconds", where).value_or(0);
  round.bytes_sent = read_unsigned(object, "bytes_sent", where);
  round.bytes_received = read_unsigned(object, "bytes_received", where);
  static const round_result results[] = {round_result::averaged, round_result::alone,
                                         round_result::failed, round_result::missed};
  // A result this version cannot name is shown as failed rather than as a success.
  round.result = read_enum(object, "result", where, results, round_result::failed);
  round.leader_id = read_string(object, "leader_id", where);
  if (const json* members = find_field(object, "members")) {
    if (!members->is_array() || members->size() > max_group_members)
      malformed(where + "members", "is not a list of at most 64 ids");
    for (const auto& member : *members) {
      if (!member.is_string() || member.get_ref<const std::string&>().size() > max_field_length)
        malformed(where + "members", "holds something other than an id");
      round.members.push_back(member.get<std::string>());
    }
  }
  round.detail = read_string(object, "detail", where, max_detail_length);
  round.ended_seconds_ago = read_number(object, "ended_seconds_ago", where).value_or(0);
  return round;
}

// --- text -------------------------------------------------------------------------------------

// Printable ASCII only, at most max_cell_width: a remote peer's strings cannot move the cursor,
// clear the screen or break the table.
std::string terminal_safe(std::string_view text) {
  std::string out;
  out.reserve(std::min(text.size(), max_cell_width));
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    out.push_back(byte >= 0x20 && byte < 0x7f ? c : '?');
  }
  if (out.size() > max_cell_width)
    out = out.substr(0, max_cell_width - 3) + "...";
  return out;
}

std::string fixed(double value, int digits) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.*f", digits, value);
  return buffer;
}

std::string human_bytes(uint64_t bytes) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  std::size_t unit = 0;
  while (value >= 1024 && unit + 1 < std::size(units)) {
    value /= 1024;
    ++unit;
  }
  return unit == 0 ? std::to_string(bytes) + " B" : fixed(value, 1) + " " + units[unit];
}

std::string human_seconds(double seconds) {
  if (seconds < 10)
    return fixed(seconds, 1) + " s";
  if (seconds < 120)
    return fixed(seconds, 0) + " s";
  if (seconds < 7200)
    return fixed(seconds / 60, 0) + " min";
  return fixed(seconds / 3600, 1) + " h";
}

// Columns of text, each as wide as its widest cell, separated by two spaces.
class text_table {
 public:
  enum class align : uint8_t { left, right };
  struct column {
    std::string title;
    align alignment = align::left;
  };

  explicit text_table(std::vector<column> columns) : columns_(std::move(columns)) {}

  void add_row(std::vector<std::string> cells) {
    for (auto& cell : cells)
      cell = terminal_safe(cell);
    cells.resize(columns_.size());
    rows_.push_back(std::move(cells));
  }

  std::string render() const {
    std::vector<std::size_t> widths;
    for (const auto& c : columns_)
      widths.push_back(c.title.size());
    for (const auto& row : rows_)
      for (std::size_t i = 0; i < row.size(); ++i)
        widths[i] = std::max(widths[i], row[i].size());
    std::string out;
    auto line = [&](const std::vector<std::string>& cells) {
      std::string text;
      for (std::size_t i = 0; i < columns_.size(); ++i) {
        const auto& cell = cells[i];
        auto pad = std::string(widths[i] - cell.size(), ' ');
        text += columns_[i].alignment == align::right ? pad + cell : cell + pad;
        if (i + 1 < columns_.size())
          text += "  ";
      }
      while (!text.empty() && text.back() == ' ')
        text.pop_back();
      out += text + "\n";
    };
    std::vector<std::string> titles;
    for (const auto& c : columns_)
      titles.push_back(c.title);
    line(titles);
    for (const auto& row : rows_)
      line(row);
    return out;
  }

 private:
  std::vector<column> columns_;
  std::vector<std::vector<std::string>> rows_;
};

} // namespace

std::string_view to_string(peer_reachability value) noexcept {
  switch (value) {
    case peer_reachability::unknown: return "unknown";
    case peer_reachability::reachable: return "reachable";
    case peer_reachability::unreachable: return "unreachable";
  }
  return "unknown";
}

std::string_view to_string(round_role value) noexcept {
  switch (value) {
    case round_role::unknown: return "unknown";
    case round_role::leader: return "leader";
    case round_role::member: return "member";
    case round_role::alone: return "alone";
  }
  return "unknown";
}

std::string render_swarm_status_json(const swarm_status& status) {
  json peers = json::array();
  for (const auto& peer : status.peers)
    peers.push_back(peer_to_json(peer));
  json rounds = json::array();
  for (const auto& round : status.rounds)
    rounds.push_back(round_to_json(round));
  json document = {
    {"peer_id", status.peer_id},   {"short_id", short_id(status.peer_id)},
    {"swarm_id", status.swarm_id}, {"address", status.address},
    {"activity", status.activity}, {"version", status.version},
    {"peers", std::move(peers)},   {"rounds", std::move(rounds)},
  };
  return document.dump(-1, ' ', false, json::error_handler_t::replace);
}

swarm_status parse_swarm_status_json(std::string_view text) {
  auto document = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (document.is_discarded())
    throw swarm_status_error("not a ddactor status: the answer is not JSON");
  if (!document.is_object())
    malformed("the document", "is not an object");
  swarm_status status;
  status.peer_id = read_string(document, "peer_id", "");
  status.swarm_id = read_string(document, "swarm_id", "");
  status.address = read_string(document, "address", "");
  status.activity = read_string(document, "activity", "");
  status.version = read_string(document, "version", "");
  const json* peers = find_field(document, "peers");
  if (peers == nullptr || !peers->is_array())
    malformed("peers", "is not a list");
  if (peers->size() > max_status_peers)
    malformed("peers", "has more than " + std::to_string(max_status_peers) + " entries");
  for (std::size_t i = 0; i < peers->size(); ++i)
    status.peers.push_back(peer_from_json((*peers)[i], "peers[" + std::to_string(i) + "]."));
  const json* rounds = find_field(document, "rounds");
  if (rounds == nullptr || !rounds->is_array())
    malformed("rounds", "is not a list");
  if (rounds->size() > max_status_rounds)
    malformed("rounds", "has more than " + std::to_string(max_status_rounds) + " entries");
  for (std::size_t i = 0; i < rounds->size(); ++i)
    status.rounds.push_back(round_from_json((*rounds)[i], "rounds[" + std::to_string(i) + "]."));
  return status;
}

std::string render_swarm_status_text(const swarm_status& status) {
  std::string out;
  if (status.peer_id.empty()) {
    out += "This peer is not part of a swarm (network.listen is not set); it is " +
           terminal_safe(status.activity.empty() ? "unknown" : status.activity) + ".\n";
    return out;
  }
  double swarm_rate = 0;
  std::optional<int64_t> own_epoch;
  bool several_swarms = false;
  for (const auto& peer : status.peers) {
    swarm_rate += peer.samples_per_second.value_or(0);
    if (peer.is_self)
      own_epoch = peer.epoch;
    several_swarms = several_swarms || peer.swarm_id != status.swarm_id;
  }
  out += "Peer " + terminal_safe(short_id(status.peer_id)) + " at " +
         terminal_safe(status.address) + ", swarm '" + terminal_safe(status.swarm_id) + "', " +
         (own_epoch ? "epoch " + std::to_string(*own_epoch) : std::string("no epoch yet")) +
         ", " + terminal_safe(status.activity.empty() ? "unknown" : status.activity) + "\n";
  out += std::to_string(status.peers.size()) + (status.peers.size() == 1 ? " peer" : " peers") +
         " in view, " + fixed(swarm_rate, 1) + " samples/s together\n\n";

  using column = text_table::column;
  constexpr auto right = text_table::align::right;
  std::vector<column> peer_columns = {{"PEER"}, {"ADDRESS"}};
  if (several_swarms)
    peer_columns.push_back({"SWARM"});
  for (auto c : std::vector<column>{{"EPOCH", right}, {"SAMPLES/S", right}, {"ROLE"},
                                    {"LAST SEEN", right}, {"STATE"}, {"REACHABILITY"}})
    peer_columns.push_back(c);
  text_table peers(peer_columns);
  for (const auto& peer : status.peers) {
    std::vector<std::string> row = {peer.peer_id + (peer.is_self ? " *" : ""),
                                    peer.address.empty() ? "-" : peer.address};
    if (several_swarms)
      row.push_back(peer.swarm_id);
    row.push_back(peer.epoch ? std::to_string(*peer.epoch) : "-");
    row.push_back(peer.samples_per_second ? fixed(*peer.samples_per_second, 1) : "-");
    row.push_back(peer.role == round_role::unknown ? "-" : std::string(to_string(peer.role)));
    row.push_back(peer.is_self ? "-"
                  : peer.last_seen_seconds ? human_seconds(*peer.last_seen_seconds) + " ago"
                                           : "never");
    row.push_back(peer.is_self ? "this peer" : peer.suspected ? "suspected" : "alive");
    row.push_back(std::string(to_string(peer.reachability)));
    peers.add_row(std::move(row));
  }
  out += peers.render();
  out += "(* this peer; ROLE is each peer's part in this peer's last round)\n\n";

  if (status.rounds.empty()) {
    out += "No averaging rounds yet.\n";
    return out;
  }
  out += "Last rounds, newest first:\n";
  text_table rounds({{"EPOCH", right},
                     {"RESULT"},
                     {"GROUP", right},
                     {"LEADER"},
                     {"DURATION", right},
                     {"SENT", right},
                     {"RECEIVED", right},
                     {"ENDED", right},
                     {"DETAIL"}});
  for (const auto& round : status.rounds)
    rounds.add_row({std::to_string(round.epoch), std::string(to_string(round.result)),
                    std::to_string(round.group_size),
                    round.leader_id.empty() ? "-" : short_id(round.leader_id),
                    fixed(round.seconds, 2) + " s", human_bytes(round.bytes_sent),
                    human_bytes(round.bytes_received),
                    human_seconds(round.ended_seconds_ago) + " ago",
                    round.detail.empty() ? "-" : round.detail});
  out += rounds.render();
  return out;
}

// --- the board --------------------------------------------------------------------------------

swarm_status_board::swarm_status_board(std::function<std::string()> activity)
    : activity_(std::move(activity)) {}

void swarm_status_board::set_self(const std::string& peer_id, const std::string& swarm_id,
                                  const std::string& address) {
  std::lock_guard<std::mutex> lock(mutex_);
  peer_id_ = peer_id;
  swarm_id_ = swarm_id;
  address_ = address;
}

void swarm_status_board::set_members(std::vector<member_fact> members) {
  std::lock_guard<std::mutex> lock(mutex_);
  members_ = std::move(members);
  std::set<std::string_view> known{peer_id_};
  for (const auto& m : members_)
    known.insert(m.peer_id);
  std::erase_if(progress_, [&](const auto& entry) { return !known.contains(entry.first); });
}

void swarm_status_board::record_progress(const std::string& peer_id, int64_t epoch,
                                         double samples_per_second, clock::time_point at) {
  std::lock_guard<std::mutex> lock(mutex_);
  progress_[peer_id] = {epoch, samples_per_second, at};
}

void swarm_status_board::record_round(round_status round, clock::time_point at) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::sort(round.members.begin(), round.members.end());
  rounds_.push_back({std::move(round), at});
  if (rounds_.size() > max_rounds)
    rounds_.erase(rounds_.begin(), rounds_.end() - static_cast<std::ptrdiff_t>(max_rounds));
}

swarm_status swarm_status_board::snapshot(clock::time_point now) const {
  // Asked before taking the lock: the callback may take locks of its own.
  std::string activity = activity_ ? activity_() : std::string("unknown");
  std::lock_guard<std::mutex> lock(mutex_);
  swarm_status out;
  out.peer_id = peer_id_;
  out.swarm_id = swarm_id_;
  out.address = address_;
  out.activity = std::move(activity);
  out.version = version_string;
  for (auto it = rounds_.rbegin(); it != rounds_.rend(); ++it) {
    out.rounds.push_back(it->round);
    out.rounds.back().ended_seconds_ago = seconds_between(it->at, now);
  }
  if (peer_id_.empty())
    return out;

  // Roles come from the last round: its leader and its group.
  auto role_of = [&](const std::string& id) {
    if (rounds_.empty())
      return round_role::unknown;
    const auto& last = rounds_.back().round;
    if (last.result == round_result::alone)
      return id == peer_id_ ? round_role::alone : round_role::unknown;
    if (id == last.leader_id)
      return round_role::leader;
    if (std::binary_search(last.members.begin(), last.members.end(), id))
      return round_role::member;
    return round_role::unknown;
  };
  auto with_progress = [&](peer_status& peer) {
    auto it = progress_.find(peer.peer_id);
    if (it == progress_.end())
      return;
    peer.epoch = it->second.epoch;
    peer.samples_per_second = it->second.samples_per_second;
    if (!peer.is_self) {
      double ago = seconds_between(it->second.at, now);
      peer.last_seen_seconds =
        peer.last_seen_seconds ? std::min(*peer.last_seen_seconds, ago) : ago;
    }
  };

  peer_status self;
  self.peer_id = peer_id_;
  self.address = address_;
  self.swarm_id = swarm_id_;
  self.is_self = true;
  self.role = role_of(peer_id_);
  with_progress(self);
  out.peers.push_back(std::move(self));
  for (const auto& member : members_) {
    peer_status peer;
    peer.peer_id = member.peer_id;
    peer.address = member.address;
    peer.swarm_id = member.swarm_id;
    peer.suspected = member.suspected;
    peer.role = role_of(member.peer_id);
    if (member.last_heard)
      peer.last_seen_seconds = seconds_between(*member.last_heard, now);
    // A member of the view is one this peer connected to directly (runtime/swarm_view.hpp).
    peer.reachability = peer_reachability::reachable;
    with_progress(peer);
    out.peers.push_back(std::move(peer));
  }
  std::sort(out.peers.begin(), out.peers.end(),
            [](const peer_status& a, const peer_status& b) { return a.peer_id < b.peer_id; });
  return out;
}

} // namespace ddactor
