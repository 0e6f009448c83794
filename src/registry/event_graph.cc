// Event graph: events own casings; a lead (confirmed hit) between casings of two
// events, or casings of two events fired by one firearm, links the events.
// Queries are breadth-first searches (fewest links = the chain an analyst
// checks first; every link is an examiner-confirmed hit or a registry record,
// so unweighted edges are the honest model).
#include <algorithm>
#include <cmath>
#include <deque>
#include <map>
#include <tuple>
#include <set>

#include <nlohmann/json.hpp>

#include "ballistics/registry.h"

namespace ballistics::registry {

Status EventGraph::AddEvent(const Event& e) {
  if (e.id <= 0) return InvalidArgument("event id " + std::to_string(e.id) + " is not positive");
  if (!(e.lat >= -90 && e.lat <= 90)) return InvalidArgument("event latitude " + std::to_string(e.lat) + " is not in [-90, 90]");
  if (!(e.lon >= -180 && e.lon <= 180)) {
    return InvalidArgument("event longitude " + std::to_string(e.lon) + " is not in [-180, 180]");
  }
  for (const Event& x : events_) {
    if (x.id == e.id) return AlreadyExists("event " + std::to_string(e.id) + " added twice");
  }
  events_.push_back(e);
  dirty_ = true;
  return Status::Ok();
}

Status EventGraph::AddCasing(std::int64_t event_id, std::int64_t casing_id) {
  if (FindEvent(event_id) == nullptr) return NotFound("event " + std::to_string(event_id) + " is unknown");
  event_casings_.push_back({casing_id, event_id});
  dirty_ = true;
  return Status::Ok();
}

void EventGraph::AddLead(std::int64_t lead_id, std::int64_t casing_a, std::int64_t casing_b) {
  leads_.push_back({lead_id, {casing_a, casing_b}});
  dirty_ = true;
}

void EventGraph::AddFirearmCasing(std::int64_t firearm_id, std::int64_t casing_id) {
  firearm_casings_.push_back({firearm_id, casing_id});
  dirty_ = true;
}

const Event* EventGraph::FindEvent(std::int64_t id) const {
  for (const Event& e : events_) {
    if (e.id == id) return &e;
  }
  return nullptr;
}

int EventGraph::IndexOf(std::int64_t id) const {
  auto it = std::lower_bound(events_.begin(), events_.end(), id, [](const Event& e, std::int64_t v) { return e.id < v; });
  return it != events_.end() && it->id == id ? static_cast<int>(it - events_.begin()) : -1;
}

void EventGraph::Rebuild() {
  if (!dirty_) return;
  std::sort(events_.begin(), events_.end(), [](const Event& a, const Event& b) { return a.id < b.id; });
  std::multimap<std::int64_t, std::int64_t> casing_events(event_casings_.begin(), event_casings_.end());
  auto events_of = [&](std::int64_t casing) {
    std::vector<std::int64_t> v;
    auto [b, e] = casing_events.equal_range(casing);
    for (auto it = b; it != e; ++it) v.push_back(it->second);
    return v;
  };
  std::set<std::tuple<std::int64_t, std::int64_t, std::string, std::int64_t>> links;
  auto add = [&](std::int64_t a, std::int64_t b, const std::string& kind, std::int64_t ref) {
    if (a == b) return;
    if (a > b) std::swap(a, b);
    links.insert({a, b, kind, ref});
  };
  for (const auto& [lead, pair] : leads_) {
    for (std::int64_t ea : events_of(pair.first)) {
      for (std::int64_t eb : events_of(pair.second)) add(ea, eb, "lead", lead);
    }
  }
  std::map<std::int64_t, std::set<std::int64_t>> firearm_events;
  for (const auto& [firearm, casing] : FirearmCasingsThroughLeads()) {
    for (std::int64_t e : events_of(casing)) firearm_events[firearm].insert(e);
  }
  for (const auto& [firearm, evs] : firearm_events) {
    // A star would do for connectivity, but every pair keeps paths one link
    // long between any two events of one gun (firearms have few events).
    for (auto a = evs.begin(); a != evs.end(); ++a) {
      for (auto b = std::next(a); b != evs.end(); ++b) add(*a, *b, "firearm", firearm);
    }
  }
  links_.clear();
  // Leads first: between equally short paths BFS then prefers direct hits
  // over links inferred through a firearm.
  for (const auto& [a, b, kind, ref] : links) {
    if (kind == "lead") links_.push_back({a, b, kind, ref});
  }
  for (const auto& [a, b, kind, ref] : links) {
    if (kind != "lead") links_.push_back({a, b, kind, ref});
  }
  adjacency_.assign(events_.size(), {});
  for (std::size_t i = 0; i < links_.size(); ++i) {
    const int ia = IndexOf(links_[i].event_a), ib = IndexOf(links_[i].event_b);
    if (ia < 0 || ib < 0) continue;
    adjacency_[static_cast<std::size_t>(ia)].push_back(static_cast<int>(i));
    adjacency_[static_cast<std::size_t>(ib)].push_back(static_cast<int>(i));
  }
  dirty_ = false;
}

const std::vector<EventLink>& EventGraph::Links() {
  Rebuild();
  return links_;
}

std::vector<std::int64_t> EventGraph::Connected(const std::vector<std::int64_t>& start_events) {
  Rebuild();
  std::vector<char> seen(events_.size(), 0);
  std::deque<int> q;
  for (std::int64_t id : start_events) {
    const int i = IndexOf(id);
    if (i >= 0 && !seen[static_cast<std::size_t>(i)]) {
      seen[static_cast<std::size_t>(i)] = 1;
      q.push_back(i);
    }
  }
  while (!q.empty()) {
    const int i = q.front();
    q.pop_front();
    for (int li : adjacency_[static_cast<std::size_t>(i)]) {
      const EventLink& l = links_[static_cast<std::size_t>(li)];
      const int j = IndexOf(l.event_a == events_[static_cast<std::size_t>(i)].id ? l.event_b : l.event_a);
      if (j >= 0 && !seen[static_cast<std::size_t>(j)]) {
        seen[static_cast<std::size_t>(j)] = 1;
        q.push_back(j);
      }
    }
  }
  std::vector<std::int64_t> out;
  for (std::size_t i = 0; i < events_.size(); ++i) {
    if (seen[i]) out.push_back(events_[i].id);
  }
  return out;
}

std::vector<std::int64_t> EventGraph::EventsOfCasing(std::int64_t casing_id) const {
  std::set<std::int64_t> s;
  for (const auto& [c, e] : event_casings_) {
    if (c == casing_id) s.insert(e);
  }
  return {s.begin(), s.end()};
}

// A casing belongs to a firearm when it is registered to it or joined to one of
// its casings by confirmed hits (leads are same-source conclusions, so the
// relation is transitive): two shootings that each hit a manufacturer's test
// fire are linked through that gun without a direct hit between them.
std::vector<std::pair<std::int64_t, std::int64_t>> EventGraph::FirearmCasingsThroughLeads() const {
  std::map<std::int64_t, std::vector<std::int64_t>> adj;
  for (const auto& [lead, pair] : leads_) {
    adj[pair.first].push_back(pair.second);
    adj[pair.second].push_back(pair.first);
  }
  std::set<std::pair<std::int64_t, std::int64_t>> out;
  for (const auto& [firearm, casing] : firearm_casings_) {
    std::deque<std::int64_t> q{casing};
    std::set<std::int64_t> seen{casing};
    while (!q.empty()) {
      const std::int64_t c = q.front();
      q.pop_front();
      out.insert({firearm, c});
      auto it = adj.find(c);
      if (it == adj.end()) continue;
      for (std::int64_t n : it->second) {
        if (seen.insert(n).second) q.push_back(n);
      }
    }
  }
  return {out.begin(), out.end()};
}

std::vector<std::int64_t> EventGraph::EventsOfFirearm(std::int64_t firearm_id) const {
  std::set<std::int64_t> s;
  for (const auto& [f, casing] : FirearmCasingsThroughLeads()) {
    if (f != firearm_id) continue;
    for (std::int64_t e : EventsOfCasing(casing)) s.insert(e);
  }
  return {s.begin(), s.end()};
}

std::vector<std::int64_t> EventGraph::EventsOfCase(const std::string& agency, const std::string& case_number) const {
  std::vector<std::int64_t> v;
  for (const Event& e : events_) {
    if (e.case_number == case_number && (agency.empty() || e.agency == agency)) v.push_back(e.id);
  }
  std::sort(v.begin(), v.end());
  return v;
}

StatusOr<std::vector<EventLink>> EventGraph::ShortestPath(std::int64_t a, std::int64_t b) {
  Rebuild();
  const int ia = IndexOf(a), ib = IndexOf(b);
  if (ia < 0) return NotFound("event " + std::to_string(a) + " is unknown");
  if (ib < 0) return NotFound("event " + std::to_string(b) + " is unknown");
  std::vector<int> via(events_.size(), -2);  // link index that reached the event; -1 = start
  std::deque<int> q{ia};
  via[static_cast<std::size_t>(ia)] = -1;
  while (!q.empty() && via[static_cast<std::size_t>(ib)] == -2) {
    const int i = q.front();
    q.pop_front();
    for (int li : adjacency_[static_cast<std::size_t>(i)]) {
      const EventLink& l = links_[static_cast<std::size_t>(li)];
      const int j = IndexOf(l.event_a == events_[static_cast<std::size_t>(i)].id ? l.event_b : l.event_a);
      if (j >= 0 && via[static_cast<std::size_t>(j)] == -2) {
        via[static_cast<std::size_t>(j)] = li;
        q.push_back(j);
      }
    }
  }
  if (via[static_cast<std::size_t>(ib)] == -2) {
    return NotFound("no chain of links joins event " + std::to_string(a) + " to event " + std::to_string(b));
  }
  std::vector<EventLink> path;
  for (int i = ib; via[static_cast<std::size_t>(i)] != -1;) {
    EventLink l = links_[static_cast<std::size_t>(via[static_cast<std::size_t>(i)])];
    const std::int64_t here = events_[static_cast<std::size_t>(i)].id;
    const std::int64_t prev = l.event_a == here ? l.event_b : l.event_a;
    l.event_a = prev;  // oriented along the path
    l.event_b = here;
    path.push_back(l);
    i = IndexOf(prev);
  }
  std::reverse(path.begin(), path.end());
  return path;
}

std::string EventGraph::GeoJson(const std::vector<std::int64_t>& ids) {
  Rebuild();
  std::set<std::int64_t> in(ids.begin(), ids.end());
  std::vector<Event> events;
  for (const Event& e : events_) {
    if (in.count(e.id)) events.push_back(e);
  }
  return EventsGeoJson(events, links_);
}

std::string EventsGeoJson(const std::vector<Event>& events_in, const std::vector<EventLink>& links) {
  std::vector<Event> events = events_in;
  std::sort(events.begin(), events.end(), [](const Event& a, const Event& b) { return a.id < b.id; });
  auto find = [&](std::int64_t id) -> const Event* {
    auto it = std::lower_bound(events.begin(), events.end(), id, [](const Event& e, std::int64_t v) { return e.id < v; });
    return it != events.end() && it->id == id ? &*it : nullptr;
  };
  nlohmann::json features = nlohmann::json::array();
  for (const Event& e : events) {
    features.push_back({{"type", "Feature"},
                        {"id", e.id},
                        {"geometry", {{"type", "Point"}, {"coordinates", {e.lon, e.lat}}}},
                        {"properties",
                         {{"kind", "event"},
                          {"event_id", e.id},
                          {"incident_id", e.incident_id},
                          {"occurred_at", e.occurred_at},
                          {"place", e.place},
                          {"case_number", e.case_number},
                          {"agency", e.agency}}}});
  }
  for (const EventLink& l : links) {
    const Event* a = find(l.event_a);
    const Event* b = find(l.event_b);
    if (!a || !b) continue;
    features.push_back(
        {{"type", "Feature"},
         {"geometry", {{"type", "LineString"}, {"coordinates", {{a->lon, a->lat}, {b->lon, b->lat}}}}},
         {"properties", {{"kind", l.kind}, {"ref_id", l.ref_id}, {"event_a", l.event_a}, {"event_b", l.event_b}}}});
  }
  return nlohmann::json{{"type", "FeatureCollection"}, {"features", features}}.dump();
}

}  // namespace ballistics::registry
