// Evidence strength on the command line, shared by cmd_evidence.cc (evidence
// validate / build-reference) and cmd_correlate.cc (compare, score-pairs).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ballistics/evidence.h"
#include "ballistics/status.h"

namespace ballistics::cli {

// The reference models a command was given, one per signature kind.
struct ReferenceModels {
  std::optional<evidence::EvidenceModel> bf, fp;
  const evidence::EvidenceModel* For(SignatureKind kind) const {
    const auto& m = kind == SignatureKind::kBreechFace ? bf : fp;
    return m ? &*m : nullptr;
  }
};

// Reads model JSON files (`evidence build-reference --out`); INVALID_ARGUMENT for
// an unreadable file or two models of the same kind, naming the file.
StatusOr<ReferenceModels> LoadReferenceModels(const std::vector<std::string>& paths);

// The newest stored models (evidence build-reference --database-url) for this
// calibre (else any calibre) and the current pipeline version; a kind without
// one stays empty (no LR). UNAVAILABLE when the database cannot be reached.
StatusOr<ReferenceModels> LoadReferenceModelsFromDb(const std::string& database_url, const std::string& calibre);

// "LR 707 (log10 2.85, at the upper bound); P(CMC >= 17 | KNM) 3e-12 [...]; basis: ..."
std::string FormatLr(const evidence::LrResult& lr);
nlohmann::json LrToJson(const evidence::LrResult& lr);

}  // namespace ballistics::cli
