// Event graph: connectivity through leads and firearms, BFS shortest path,
// GeoJSON export (RFC 7946: [lon, lat], Point + LineString features).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "ballistics/registry.h"

namespace ballistics::registry {
namespace {

Event Ev(std::int64_t id, double lat, double lon, std::string case_number) {
  Event e;
  e.id = id;
  e.incident_id = "INC-" + std::to_string(id);
  e.occurred_at = "2024-05-0" + std::to_string(id % 9 + 1) + "T22:00:00Z";
  e.lat = lat;
  e.lon = lon;
  e.place = "block " + std::to_string(id);
  e.case_number = std::move(case_number);
  e.agency = "BPD";
  return e;
}

// Events 1..5 with casings 101..105 (event 3 owns 103 and 113); 6 is isolated.
// Leads: 101-102, 102-103; firearm 900 fired 113 and 104; 105 only linked to nothing.
EventGraph Sample() {
  EventGraph g;
  for (int i = 1; i <= 6; ++i) EXPECT_TRUE(g.AddEvent(Ev(i, 39.29 + i * 0.01, -76.61 - i * 0.01, i <= 3 ? "C1" : "C2")).ok());
  for (int i = 1; i <= 6; ++i) EXPECT_TRUE(g.AddCasing(i, 100 + i).ok());
  EXPECT_TRUE(g.AddCasing(3, 113).ok());
  g.AddLead(7001, 101, 102);
  g.AddLead(7002, 103, 102);
  g.AddFirearmCasing(900, 113);
  g.AddFirearmCasing(900, 104);
  return g;
}

TEST(EventGraphTest, RejectsBadEvents) {
  EventGraph g;
  EXPECT_EQ(g.AddEvent(Ev(0, 0, 0, "C")).code(), StatusCode::kInvalidArgument);
  Status s = g.AddEvent(Ev(1, 91, 0, "C"));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("91"), std::string::npos);
  EXPECT_EQ(g.AddEvent(Ev(1, 0, -181, "C")).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(g.AddEvent(Ev(1, 0, 0, "C")).ok());
  EXPECT_EQ(g.AddEvent(Ev(1, 0, 0, "C")).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(g.AddCasing(2, 5).code(), StatusCode::kNotFound);
}

TEST(EventGraphTest, ConnectedThroughLeadsAndFirearm) {
  EventGraph g = Sample();
  EXPECT_EQ(g.Links().size(), 3u);
  EXPECT_EQ(g.Connected({1}), (std::vector<std::int64_t>{1, 2, 3, 4}));
  EXPECT_EQ(g.Connected({6}), (std::vector<std::int64_t>{6}));
  EXPECT_EQ(g.Connected(g.EventsOfCasing(104)), (std::vector<std::int64_t>{1, 2, 3, 4}));
  EXPECT_EQ(g.EventsOfFirearm(900), (std::vector<std::int64_t>{3, 4}));
  EXPECT_EQ(g.EventsOfCase("BPD", "C2"), (std::vector<std::int64_t>{4, 5, 6}));
  EXPECT_EQ(g.Connected(g.EventsOfCase("BPD", "C2")), (std::vector<std::int64_t>{1, 2, 3, 4, 5, 6}));
}

TEST(EventGraphTest, ShortestPathIsBfs) {
  EventGraph g = Sample();
  auto p = g.ShortestPath(1, 4);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ASSERT_EQ(p->size(), 3u);
  EXPECT_EQ((*p)[0].event_a, 1);
  EXPECT_EQ((*p)[0].event_b, 2);
  EXPECT_EQ((*p)[0].kind, "lead");
  EXPECT_EQ((*p)[0].ref_id, 7001);
  EXPECT_EQ((*p)[1].event_b, 3);
  EXPECT_EQ((*p)[2].kind, "firearm");
  EXPECT_EQ((*p)[2].ref_id, 900);
  EXPECT_EQ((*p)[2].event_b, 4);
  // A direct lead 101-104 makes the path one link long.
  g.AddLead(7003, 101, 104);
  p = g.ShortestPath(1, 4);
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(p->size(), 1u);
  EXPECT_EQ((*p)[0].ref_id, 7003);
  EXPECT_TRUE(g.ShortestPath(2, 2)->empty());
  EXPECT_EQ(g.ShortestPath(1, 6).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(g.ShortestPath(1, 99).status().code(), StatusCode::kNotFound);
}

// Two shootings each hit the manufacturer's test fire (which has no event):
// the firearm links them although no hit joins the two scenes directly.
TEST(EventGraphTest, HitsOnATestFireLinkEventsThroughTheFirearm) {
  EventGraph g;
  ASSERT_TRUE(g.AddEvent(Ev(1, 39.3, -76.6, "A")).ok());
  ASSERT_TRUE(g.AddEvent(Ev(2, 39.4, -76.7, "B")).ok());
  ASSERT_TRUE(g.AddCasing(1, 11).ok());
  ASSERT_TRUE(g.AddCasing(2, 12).ok());
  g.AddFirearmCasing(77, 500);  // test fire 500 of firearm 77
  g.AddLead(1, 11, 500);
  g.AddLead(2, 500, 12);
  EXPECT_EQ(g.EventsOfFirearm(77), (std::vector<std::int64_t>{1, 2}));
  auto p = g.ShortestPath(1, 2);
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(p->size(), 1u);
  EXPECT_EQ((*p)[0].kind, "firearm");
  EXPECT_EQ((*p)[0].ref_id, 77);
}

TEST(EventGraphTest, GeoJsonOfAComponent) {
  EventGraph g = Sample();
  auto j = nlohmann::json::parse(g.GeoJson(g.Connected({1})));
  EXPECT_EQ(j["type"], "FeatureCollection");
  int points = 0, lines = 0;
  for (const auto& f : j["features"]) {
    EXPECT_EQ(f["type"], "Feature");
    if (f["geometry"]["type"] == "Point") {
      ++points;
      const auto id = f["properties"]["event_id"].get<std::int64_t>();
      EXPECT_DOUBLE_EQ(f["geometry"]["coordinates"][0].get<double>(), -76.61 - id * 0.01);  // lon first
      EXPECT_DOUBLE_EQ(f["geometry"]["coordinates"][1].get<double>(), 39.29 + id * 0.01);
    } else {
      ASSERT_EQ(f["geometry"]["type"], "LineString");
      EXPECT_EQ(f["geometry"]["coordinates"].size(), 2u);
      ++lines;
    }
  }
  EXPECT_EQ(points, 4);
  EXPECT_EQ(lines, 3);
}

}  // namespace
}  // namespace ballistics::registry
