// Reference populations and LR models (include/ballistics/store.h, "Evidence
// strength"; schema db/migrations/0030_reference_populations.sql).
#include <string>
#include <vector>

#include "ballistics/store.h"
#include "pg.h"

namespace ballistics::store {

class EvidenceDb::Impl {
 public:
  explicit Impl(std::unique_ptr<pg::Connection> c) : conn(std::move(c)) {}
  std::unique_ptr<pg::Connection> conn;
};

EvidenceDb::EvidenceDb(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
EvidenceDb::~EvidenceDb() = default;

bool EvidenceDb::Usable() const { return impl_->conn->Idle(); }

StatusOr<std::unique_ptr<EvidenceDb>> EvidenceDb::Connect(const std::string& database_url) {
  BALLISTICS_ASSIGN_OR_RETURN(auto conn, pg::Connection::Open(database_url));
  return std::unique_ptr<EvidenceDb>(new EvidenceDb(std::make_unique<Impl>(std::move(conn))));
}

namespace {

std::string KindText(SignatureKind k) { return std::string(SignatureKindName(k)); }

// PostgreSQL array literal of integers / booleans: "{1,2,3}".
template <typename Fn>
std::string ArrayLiteral(const std::vector<ReferenceScoreRow>& rows, Fn field) {
  std::string s = "{";
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (i) s += ',';
    s += field(rows[i]);
  }
  return s + "}";
}

const std::string kSelectModel =
    "SELECT m.id, p.id, p.name, p.kind, p.calibre, p.pipeline_version, m.model, m.params::text, " +
    pg::IsoUtc("m.created_at") + " FROM evidence_models m JOIN reference_populations p ON p.id = m.population_id ";

ReferenceModelRecord RowToRecord(const pg::Result& r, int i) {
  ReferenceModelRecord rec;
  rec.id = r.Int64(i, 0);
  rec.population_id = r.Int64(i, 1);
  rec.name = r.Text(i, 2);
  rec.kind = r.Text(i, 3) == "FP" ? SignatureKind::kFiringPin : SignatureKind::kBreechFace;
  rec.calibre = r.Text(i, 4);
  rec.pipeline_version = r.Text(i, 5);
  rec.model = r.Text(i, 6);
  rec.params_json = r.Text(i, 7);
  rec.created_at = r.Text(i, 8);
  return rec;
}

}  // namespace

StatusOr<std::int64_t> EvidenceDb::SaveReferenceModel(const ReferenceModelRecord& rec) {
  if (rec.name.empty() || rec.pipeline_version.empty() || rec.model.empty() || rec.params_json.empty()) {
    return InvalidArgument("store: reference model needs a name, pipeline version, model and params (got name='" +
                           rec.name + "', pipeline_version='" + rec.pipeline_version + "')");
  }
  pg::Connection& c = *impl_->conn;
  BALLISTICS_ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(c));
  const std::string kind = KindText(rec.kind);
  BALLISTICS_RETURN_IF_ERROR(c.Exec("replace reference population",
                                    "DELETE FROM reference_populations WHERE name = $1 AND kind = $2 AND "
                                    "calibre = $3 AND pipeline_version = $4",
                                    {pg::Param::Text(rec.name), pg::Param::Text(kind), pg::Param::Text(rec.calibre),
                                     pg::Param::Text(rec.pipeline_version)})
                                 .status());
  std::int64_t km = 0;
  for (const auto& s : rec.scores) km += s.same_source ? 1 : 0;
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result pop,
      c.Exec("insert reference population",
             "INSERT INTO reference_populations (name, kind, calibre, pipeline_version, km_pairs, knm_pairs) "
             "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
             {pg::Param::Text(rec.name), pg::Param::Text(kind), pg::Param::Text(rec.calibre),
              pg::Param::Text(rec.pipeline_version), pg::Param::Int(km),
              pg::Param::Int(static_cast<std::int64_t>(rec.scores.size()) - km)}));
  const std::int64_t population_id = pop.Int64(0, 0);
  if (!rec.scores.empty()) {
    BALLISTICS_RETURN_IF_ERROR(
        c.Exec("insert reference scores",
               "INSERT INTO reference_scores (population_id, same_source, cmc, cells) "
               "SELECT $1, s, c, n FROM unnest($2::boolean[], $3::integer[], $4::integer[]) AS t(s, c, n)",
               {pg::Param::Int(population_id),
                pg::Param::Text(ArrayLiteral(rec.scores, [](const auto& r) { return r.same_source ? "t" : "f"; })),
                pg::Param::Text(ArrayLiteral(rec.scores, [](const auto& r) { return std::to_string(r.cmc); })),
                pg::Param::Text(ArrayLiteral(rec.scores, [](const auto& r) { return std::to_string(r.cells); }))})
            .status());
  }
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result model,
      c.Exec("insert evidence model",
             "INSERT INTO evidence_models (population_id, model, pipeline_version, params) "
             "VALUES ($1, $2, $3, $4::jsonb) RETURNING id",
             {pg::Param::Int(population_id), pg::Param::Text(rec.model), pg::Param::Text(rec.pipeline_version),
              pg::Param::Text(rec.params_json)}));
  const std::int64_t id = model.Int64(0, 0);
  BALLISTICS_RETURN_IF_ERROR(tx->Commit());
  return id;
}

StatusOr<ReferenceModelRecord> EvidenceDb::FindReferenceModel(SignatureKind kind, const std::string& calibre,
                                                              const std::string& pipeline_version) {
  pg::Connection& c = *impl_->conn;
  // A model of the casing's own calibre first, then one for any calibre.
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result r,
      c.Exec("find reference model",
             kSelectModel +
                 "WHERE p.kind = $1 AND p.pipeline_version = $2 AND (p.calibre = $3 OR p.calibre = '') "
                 "ORDER BY (p.calibre = $3) DESC, m.created_at DESC, m.id DESC LIMIT 1",
             {pg::Param::Text(KindText(kind)), pg::Param::Text(pipeline_version), pg::Param::Text(calibre)}));
  if (r.rows() == 0) {
    return NotFound("store: no reference model for kind " + KindText(kind) + ", calibre '" + calibre +
                    "' (or any calibre), pipeline version " + pipeline_version);
  }
  ReferenceModelRecord rec = RowToRecord(r, 0);
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result s, c.Exec("read reference scores",
                           "SELECT same_source, cmc, cells FROM reference_scores WHERE population_id = $1",
                           {pg::Param::Int(rec.population_id)}));
  for (int i = 0; i < s.rows(); ++i) rec.scores.push_back({s.Bool(i, 0), s.Int32(i, 1), s.Int32(i, 2)});
  return rec;
}

StatusOr<std::vector<ReferenceModelRecord>> EvidenceDb::ListReferenceModels() {
  BALLISTICS_ASSIGN_OR_RETURN(pg::Result r, impl_->conn->Exec("list reference models",
                                                              kSelectModel +
                                                                  "ORDER BY m.created_at DESC, m.id DESC"));
  std::vector<ReferenceModelRecord> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(RowToRecord(r, i));
  return out;
}

}  // namespace ballistics::store
