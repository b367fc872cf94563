// Reachability discovery through the initial peers; see reachability.hpp.
#include "runtime/secure/reachability.hpp"

#include <algorithm>
#include <map>

#include "runtime/peer_address.hpp"
#include "runtime/secure/link_gateway.hpp"

namespace ddactor {

reachability discover_reachability(link_gateway& gateway,
                                   const std::vector<std::string>& initial_peers,
                                   std::string_view mode, std::chrono::milliseconds timeout,
                                   std::size_t max_answers) {
  reachability found;
  std::map<std::string, int> seen_at;
  int dial_backs = 0;
  std::string failures;
  for (auto& peer : initial_peers) {
    if (found.relay_candidates.size() >= max_answers)
      break;
    auto address = parse_peer_address(peer);
    if (!address)
      continue;
    auto answer = gateway.probe(address->first, address->second, timeout);
    if (!answer.answered) {
      failures += (failures.empty() ? "" : "; ") + peer + ": " + answer.error;
      continue;
    }
    found.relay_candidates.push_back(peer);
    ++seen_at[answer.observed_host];
    if (answer.reachable) {
      ++dial_backs;
      auto& hosts = found.observed_hosts;
      if (std::find(hosts.begin(), hosts.end(), answer.observed_host) == hosts.end())
        hosts.push_back(answer.observed_host);
    }
  }
  const int answers = static_cast<int>(found.relay_candidates.size());
  if (found.observed_hosts.empty()) {
    int most = 0;
    for (auto& [host, count] : seen_at)
      if (count > most) {
        most = count;
        found.observed_hosts = {host};
      }
  }
  std::string seen;
  for (auto& host : found.observed_hosts)
    seen += (seen.empty() ? "" : " and ") + host;
  if (mode == "yes")
    found.reachable = true;
  else if (mode == "no")
    found.reachable = false;
  else
    found.reachable = answers == 0 || dial_backs > 0;
  if (answers == 0)
    found.summary = "no initial peer answered a reachability probe" +
                    (failures.empty() ? std::string{} : " (" + failures + ")");
  else
    found.summary = std::to_string(answers) + " initial peer(s) see this peer at " + seen +
                    "; " + std::to_string(dial_backs) + " of " +
                    std::to_string(answers) + " could connect back";
  return found;
}

} // namespace ddactor
