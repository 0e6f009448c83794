// `ballisticsctl evidence validate` and `evidence build-reference`: likelihood
// ratios from scored pairs (score-pairs CSV) and their ground truth.
//
// Ground truth is given either as a CSV file (--truth: header line, then
// scan,source[,...] — the scan name as in the pairs CSV, the source being the
// firearm or slide; fadul/ground_truth.csv has this form) or as a regular
// expression whose first group, applied to the scan name, is the source
// (--source-regex '^(K[0-9]+)' for the DFSC names).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ballistics/evidence.h"
#include "ballistics/preprocess.h"
#include "ballistics/store.h"
#include "commands.h"
#include "evidence_cli.h"

namespace ballistics::cli {

namespace fs = std::filesystem;
using evidence::CmcScore;
using evidence::EvidenceModel;
using evidence::LrResult;

StatusOr<ReferenceModels> LoadReferenceModels(const std::vector<std::string>& paths) {
  ReferenceModels out;
  for (const std::string& path : paths) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return InvalidArgument("cannot read reference model " + path);
    std::stringstream ss;
    ss << in.rdbuf();
    auto m = evidence::ModelFromJson(ss.str());
    if (!m.ok()) return m.status().WithContext(path);
    auto& slot = m->kind == SignatureKind::kBreechFace ? out.bf : out.fp;
    if (slot) {
      return InvalidArgument(path + ": a second " + std::string(SignatureKindName(m->kind)) +
                             " reference model (give one per kind)");
    }
    slot = std::move(m).value();
  }
  return out;
}

StatusOr<ReferenceModels> LoadReferenceModelsFromDb(const std::string& database_url, const std::string& calibre) {
  BALLISTICS_ASSIGN_OR_RETURN(auto db, store::EvidenceDb::Connect(database_url));
  ReferenceModels out;
  for (SignatureKind kind : {SignatureKind::kBreechFace, SignatureKind::kFiringPin}) {
    auto rec = db->FindReferenceModel(kind, calibre, std::string(kPipelineVersion));
    if (!rec.ok() && rec.status().code() == StatusCode::kNotFound) continue;  // no LR for this kind
    if (!rec.ok()) return rec.status();
    auto m = evidence::ModelFromJson(rec->params_json);
    if (!m.ok()) return m.status().WithContext("stored reference model " + std::to_string(rec->id));
    (kind == SignatureKind::kBreechFace ? out.bf : out.fp) = std::move(m).value();
  }
  return out;
}

namespace {

std::string Sci(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), v == 0 ? "0" : (v >= 0.01 ? "%.3f" : "%.2g"), v);
  return buf;
}

std::string LrText(double log10_lr) {
  char buf[48];
  if (log10_lr >= 0) {
    std::snprintf(buf, sizeof(buf), log10_lr >= 2 ? "%.0f" : "%.3g", std::pow(10.0, log10_lr));
  } else {
    std::snprintf(buf, sizeof(buf), "1/%.3g", std::pow(10.0, -log10_lr));
  }
  return buf;
}

}  // namespace

std::string FormatLr(const LrResult& lr) {
  if (!lr.available) return "LR: " + lr.basis + "; the raw score is all there is";
  char buf[160];
  std::snprintf(buf, sizeof(buf), "LR %s (log10 %.2f%s)", LrText(lr.log10_lr).c_str(), lr.log10_lr,
                lr.at_bound ? ", at the bound the reference data support" : "");
  std::string s = buf;
  s += "; chance tail P(CMC >= this | KNM) " + Sci(lr.chance_tail.estimate) + " [" + Sci(lr.chance_tail.lower) +
       ", " + Sci(lr.chance_tail.upper) + "]";
  s += "\n    basis: " + lr.basis;
  return s;
}

nlohmann::json LrToJson(const LrResult& lr) {
  nlohmann::json j{{"available", lr.available}, {"basis", lr.basis}};
  if (!lr.available) return j;
  j["lr"] = lr.lr;
  j["log10_lr"] = lr.log10_lr;
  j["log10_lr_unbounded"] = lr.log10_lr_unbounded;
  j["at_bound"] = lr.at_bound;
  j["small_reference"] = lr.small_reference;
  j["reference_km_pairs"] = lr.km_pairs;
  j["reference_knm_pairs"] = lr.knm_pairs;
  j["model"] = EvidenceModel::kModelName;
  j["chance_tail"] = {{"estimate", lr.chance_tail.estimate},
                      {"lower", lr.chance_tail.lower},
                      {"upper", lr.chance_tail.upper}};
  return j;
}

namespace {

[[noreturn]] void Fail(const Status& status, const std::string& context) {
  std::string m = status.ToString();
  std::replace(m.begin(), m.end(), '\n', ' ');
  std::cerr << "error: " << context << ": " << m << "\n";
  throw CLI::RuntimeError(status.code() == StatusCode::kUnavailable ? kExitDatabaseError
                          : status.code() == StatusCode::kInternal  ? kExitInternal
                                                                    : kExitInputError);
}

std::vector<std::string> SplitCsv(const std::string& line) {
  std::vector<std::string> f;
  std::stringstream ss(line);
  std::string x;
  while (std::getline(ss, x, ',')) f.push_back(x);
  if (!line.empty() && line.back() == ',') f.push_back("");
  for (auto& s : f) {
    if (!s.empty() && s.back() == '\r') s.pop_back();
  }
  return f;
}

// Where each scan's source comes from.
struct Truth {
  std::map<std::string, std::string> table;
  std::optional<std::regex> regex;
  std::string regex_text;

  StatusOr<std::string> SourceOf(const std::string& scan) const {
    if (regex) {
      std::smatch m;
      if (!std::regex_search(scan, m, *regex) || m.size() < 2 || m[1].str().empty()) {
        return InvalidArgument("scan '" + scan + "' does not match --source-regex '" + regex_text +
                               "' (its first group is the source)");
      }
      return m[1].str();
    }
    auto it = table.find(scan);
    if (it == table.end()) return InvalidArgument("scan '" + scan + "' is not in the --truth file");
    return it->second;
  }
};

StatusOr<Truth> LoadTruth(const std::string& truth_csv, const std::string& regex) {
  Truth t;
  if (!regex.empty()) {
    try {
      t.regex.emplace(regex);
    } catch (const std::regex_error& e) {
      return InvalidArgument("--source-regex '" + regex + "': " + e.what());
    }
    t.regex_text = regex;
    return t;
  }
  std::ifstream in(truth_csv);
  if (!in) return InvalidArgument("cannot read --truth file " + truth_csv);
  std::string line;
  std::getline(in, line);  // header
  int n = 1;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty() || line == "\r") continue;
    const auto f = SplitCsv(line);
    if (f.size() < 2 || f[0].empty() || f[1].empty()) {
      return InvalidArgument(truth_csv + " line " + std::to_string(n) + ": expected scan,source");
    }
    t.table[f[0]] = f[1];
  }
  if (t.table.empty()) return InvalidArgument(truth_csv + ": no scans");
  return t;
}

// Pairs of a score-pairs CSV with their sources; the kind picks cmc/cells or
// fp_cmc/fp_cells (pairs without an FP score are skipped for FP).
StatusOr<std::vector<evidence::LabeledPair>> LoadPairs(const std::string& csv, const Truth& truth,
                                                       SignatureKind kind) {
  std::ifstream in(csv);
  if (!in) return InvalidArgument("cannot read pairs file " + csv);
  std::string line;
  if (!std::getline(in, line)) return InvalidArgument(csv + ": empty");
  const auto header = SplitCsv(line);
  std::map<std::string, std::size_t> col;
  for (std::size_t i = 0; i < header.size(); ++i) col[header[i]] = i;
  const bool bf = kind == SignatureKind::kBreechFace;
  const std::string cmc_col = bf ? "cmc" : "fp_cmc", cells_col = bf ? "cells" : "fp_cells";
  for (const std::string& c : {std::string("reference"), std::string("target"), cmc_col, cells_col}) {
    if (!col.count(c)) return InvalidArgument(csv + ": no column '" + c + "' (not a score-pairs CSV?)");
  }
  std::vector<evidence::LabeledPair> pairs;
  int n = 1;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty() || line == "\r") continue;
    const auto f = SplitCsv(line);
    auto field = [&](const std::string& c) { return col[c] < f.size() ? f[col[c]] : std::string(); };
    if (field(cmc_col).empty() && !bf) continue;  // no FP score for this pair
    evidence::LabeledPair p;
    p.reference = field("reference");
    p.target = field("target");
    try {
      std::size_t used = 0;
      p.score.cmc = std::stoi(field(cmc_col), &used);
      p.score.cells = std::stoi(field(cells_col));
    } catch (const std::exception&) {
      return InvalidArgument(csv + " line " + std::to_string(n) + ": " + cmc_col + "='" + field(cmc_col) + "', " +
                             cells_col + "='" + field(cells_col) + "' are not integers");
    }
    Status s = evidence::ValidateScore(p.score);
    if (!s.ok()) return s.WithContext(csv + " line " + std::to_string(n));
    BALLISTICS_ASSIGN_OR_RETURN(p.reference_source, truth.SourceOf(p.reference));
    BALLISTICS_ASSIGN_OR_RETURN(p.target_source, truth.SourceOf(p.target));
    pairs.push_back(std::move(p));
  }
  if (pairs.empty()) return InvalidArgument(csv + ": no " + std::string(SignatureKindName(kind)) + " scores");
  return pairs;
}

struct CommonArgs {
  std::string pairs_csv;
  std::string truth;
  std::string source_regex;
  std::string kind = "bf";
  std::string name;
};

void AddCommon(CLI::App* cmd, CommonArgs& a) {
  cmd->add_option("pairs", a.pairs_csv, "CSV written by score-pairs")->required()->check(CLI::ExistingFile);
  auto* truth = cmd->add_option("--truth", a.truth, "Ground truth CSV: header, then scan,source per line")
                    ->check(CLI::ExistingFile);
  auto* regex = cmd->add_option("--source-regex", a.source_regex,
                                "Source = first group of this regular expression on the scan name");
  truth->excludes(regex);
  cmd->add_option("--kind", a.kind, "Signature kind: bf (breech face) or fp (firing pin)")
      ->check(CLI::IsMember({"bf", "fp"}));
  cmd->add_option("--name", a.name, "Name of the reference population (default: the CSV's file stem)");
}

struct Loaded {
  SignatureKind kind;
  std::string name;
  std::vector<evidence::LabeledPair> pairs;
};

Loaded LoadCommon(const CommonArgs& a) {
  if (a.truth.empty() == a.source_regex.empty()) {
    std::cerr << "error: give exactly one of --truth and --source-regex\n";
    throw CLI::RuntimeError(kExitUsage);
  }
  auto truth = LoadTruth(a.truth, a.source_regex);
  if (!truth.ok()) Fail(truth.status(), "ground truth");
  Loaded l;
  l.kind = a.kind == "fp" ? SignatureKind::kFiringPin : SignatureKind::kBreechFace;
  l.name = a.name.empty() ? fs::path(a.pairs_csv).stem().string() : a.name;
  auto pairs = LoadPairs(a.pairs_csv, *truth, l.kind);
  if (!pairs.ok()) Fail(pairs.status(), "pairs");
  l.pairs = std::move(pairs).value();
  return l;
}

evidence::ReferencePopulation Population(const Loaded& l, const std::string& calibre) {
  evidence::ReferencePopulation p;
  p.name = l.name;
  p.kind = l.kind;
  p.calibre = calibre;
  p.pipeline_version = std::string(kPipelineVersion);
  for (const auto& q : l.pairs) (q.SameSource() ? p.km : p.knm).push_back(q.score);
  return p;
}

nlohmann::json IntervalJson(const evidence::Interval& i) {
  return {{"estimate", i.estimate}, {"lower", i.lower}, {"upper", i.upper}};
}

nlohmann::json RatesJson(const evidence::ErrorRates& e) {
  return {{"threshold_cmc", e.threshold_cmc},
          {"km_pairs", e.km_pairs},
          {"knm_pairs", e.knm_pairs},
          {"false_negatives", e.false_negatives},
          {"false_positives", e.false_positives},
          {"empirical_fnr", IntervalJson(e.empirical_fnr)},
          {"empirical_fpr", IntervalJson(e.empirical_fpr)},
          {"p_km", IntervalJson(e.p_km)},
          {"p_knm", IntervalJson(e.p_knm)},
          {"binomial_fnr", IntervalJson(e.binomial_fnr)},
          {"binomial_fpr", IntervalJson(e.binomial_fpr)}};
}

void RegisterValidate(CLI::App& parent) {
  struct Args {
    CommonArgs common;
    std::string out_dir;
    std::string lr_csv;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = parent.add_subcommand(
      "validate",
      "Leave-source-out validation of the LRs: Cllr, Cllr-min (PAV), misleading evidence, Tippett and ECE plots");
  AddCommon(cmd, args->common);
  cmd->add_option("--out-dir", args->out_dir, "Write <name>_tippett.png and <name>_ece.png here");
  cmd->add_option("--lr-csv", args->lr_csv, "Write every pair's cross-validated LR to this CSV");
  cmd->add_flag("--json", args->json, "Print one JSON object");
  cmd->callback([args] {
    const Loaded l = LoadCommon(args->common);
    const evidence::ReferencePopulation base = Population(l, "");
    auto cv = evidence::CrossValidate(l.pairs, base);
    if (!cv.ok()) Fail(cv.status(), "cross-validation");
    std::vector<evidence::ScoredLr> lrs;
    for (const auto& c : *cv) lrs.push_back({c.pair.SameSource(), c.lr.log10_lr, c.lr.available});
    auto metrics = evidence::ComputeMetrics(lrs);
    if (!metrics.ok()) Fail(metrics.status(), "metrics");
    const evidence::ValidationMetrics& m = *metrics;
    // The model on the whole population: what build-reference would store.
    auto full = evidence::FitEvidenceModel(base);
    std::vector<std::string> written;
    if (!args->out_dir.empty()) {
      std::error_code ec;
      fs::create_directories(args->out_dir, ec);
      const std::string kind(SignatureKindName(l.kind));
      const std::string stem = (fs::path(args->out_dir) / (l.name + "_")).string();
      const std::string what = l.name + " " + kind + ", leave-source-out (" + std::to_string(m.km) + " KM, " +
                               std::to_string(m.knm) + " KNM)";
      Status s = evidence::WriteTippettPlot(lrs, "Tippett plot: " + what, stem + "tippett.png");
      if (!s.ok()) Fail(s, "plot");
      s = evidence::WriteEcePlot(lrs, "ECE plot: " + what, stem + "ece.png");
      if (!s.ok()) Fail(s, "plot");
      written = {stem + "tippett.png", stem + "ece.png"};
    }
    if (!args->lr_csv.empty()) {
      std::ofstream out(args->lr_csv);
      out << "reference,target,reference_source,target_source,truth,cmc,cells,lr,log10_lr,lr_at_bound,lr_basis\n";
      for (const auto& c : *cv) {
        char buf[128];
        std::snprintf(buf, sizeof(buf), ",%s,%d,%d,%.6g,%.4f,%d,", c.pair.SameSource() ? "KM" : "KNM",
                      c.pair.score.cmc, c.pair.score.cells, c.lr.lr, c.lr.log10_lr, c.lr.at_bound ? 1 : 0);
        out << c.pair.reference << "," << c.pair.target << "," << c.pair.reference_source << ","
            << c.pair.target_source << buf << c.lr.basis << "\n";
      }
      if (!out.flush()) Fail(Internal("cannot write " + args->lr_csv), "lr csv");
      written.push_back(args->lr_csv);
    }
    if (args->json) {
      nlohmann::json j{{"name", l.name},
                       {"kind", std::string(SignatureKindName(l.kind))},
                       {"pairs", l.pairs.size()},
                       {"km", m.km},
                       {"knm", m.knm},
                       {"lr_unavailable", m.unavailable},
                       {"cllr", m.cllr},
                       {"cllr_min", m.cllr_min},
                       {"cllr_cal", m.cllr_cal},
                       {"km_misleading", m.km_misleading},
                       {"knm_misleading", m.knm_misleading},
                       {"rmep", IntervalJson(m.rmep_ci)},
                       {"rmed", IntervalJson(m.rmed_ci)},
                       {"min_log10_lr_km", m.min_log10_lr_km},
                       {"max_log10_lr_knm", m.max_log10_lr_knm},
                       {"files", written}};
      if (full.ok()) {
        j["full_model"] = {{"log10_lr_lower", full->log10_lr_lower},
                           {"log10_lr_upper", full->log10_lr_upper},
                           {"small_reference", full->small_reference},
                           {"km_fit", {{"alpha", full->km_fit.alpha}, {"beta", full->km_fit.beta}}},
                           {"knm_fit", {{"alpha", full->knm_fit.alpha}, {"beta", full->knm_fit.beta}}},
                           {"error_rates", RatesJson(full->rates)}};
      } else {
        j["full_model"] = nullptr;
      }
      std::cout << j.dump(1) << "\n";
      return;
    }
    std::printf("%s %s: %zu pairs (%lld KM, %lld KNM), leave-source-out\n", l.name.c_str(),
                std::string(SignatureKindName(l.kind)).c_str(), l.pairs.size(), static_cast<long long>(m.km),
                static_cast<long long>(m.knm));
    std::printf("  Cllr %.4f   Cllr-min %.4f   Cllr-cal %.4f   (bits; 1 = neutral, 0 = perfect)\n", m.cllr,
                m.cllr_min, m.cllr_cal);
    std::printf("  misleading: KM with LR < 1: %lld of %lld (95%% CI %.3f-%.3f); KNM with LR > 1: %lld of %lld "
                "(95%% CI %.4f-%.4f)\n",
                static_cast<long long>(m.km_misleading), static_cast<long long>(m.km), m.rmep_ci.lower,
                m.rmep_ci.upper, static_cast<long long>(m.knm_misleading), static_cast<long long>(m.knm),
                m.rmed_ci.lower, m.rmed_ci.upper);
    std::printf("  lowest KM LR %s, highest KNM LR %s; pairs without a calibrated LR: %lld\n",
                LrText(m.min_log10_lr_km).c_str(), LrText(m.max_log10_lr_knm).c_str(),
                static_cast<long long>(m.unavailable));
    if (full.ok()) {
      const auto& e = full->rates;
      std::printf("  whole population: LR bounds %s to %s (ELUB)%s\n", LrText(full->log10_lr_lower).c_str(),
                  LrText(full->log10_lr_upper).c_str(), full->small_reference ? ", SMALL REFERENCE" : "");
      std::printf("  at CMC >= %d: FPR %lld/%lld (CI %s-%s), binomial %s (%s-%s); FNR %lld/%lld (CI %s-%s), "
                  "binomial %s (%s-%s)\n",
                  e.threshold_cmc, static_cast<long long>(e.false_positives), static_cast<long long>(e.knm_pairs),
                  Sci(e.empirical_fpr.lower).c_str(), Sci(e.empirical_fpr.upper).c_str(),
                  Sci(e.binomial_fpr.estimate).c_str(), Sci(e.binomial_fpr.lower).c_str(),
                  Sci(e.binomial_fpr.upper).c_str(), static_cast<long long>(e.false_negatives),
                  static_cast<long long>(e.km_pairs), Sci(e.empirical_fnr.lower).c_str(),
                  Sci(e.empirical_fnr.upper).c_str(), Sci(e.binomial_fnr.estimate).c_str(),
                  Sci(e.binomial_fnr.lower).c_str(), Sci(e.binomial_fnr.upper).c_str());
    } else {
      std::printf("  whole population: %s\n", full.status().message().c_str());
    }
    for (const auto& f : written) std::printf("  wrote %s\n", f.c_str());
  });
}

void RegisterBuildReference(CLI::App& parent) {
  struct Args {
    CommonArgs common;
    std::string out;
    std::string calibre;
    std::string database_url;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = parent.add_subcommand(
      "build-reference",
      "Fit the LR model and error rates on a scored reference population (score-pairs CSV + ground truth); "
      "write it as JSON (--out) and/or store it in the database (--database-url)");
  AddCommon(cmd, args->common);
  cmd->add_option("--out", args->out, "Model JSON file (for compare/score-pairs --reference-model)");
  cmd->add_option("--calibre", args->calibre, "Calibre of the reference casings (default: any)");
  cmd->add_option("--database-url", args->database_url, "Store population and model (replaces the same "
                                                        "name, kind, calibre and pipeline version)")
      ->envname("BALLISTICS_DATABASE_URL");
  cmd->callback([args] {
    if (args->out.empty() && args->database_url.empty()) {
      std::cerr << "error: give --out FILE and/or --database-url URL\n";
      throw CLI::RuntimeError(kExitUsage);
    }
    const Loaded l = LoadCommon(args->common);
    auto model = evidence::FitEvidenceModel(Population(l, args->calibre));
    if (!model.ok()) Fail(model.status(), "reference model");
    if (!args->out.empty()) {
      std::ofstream out(args->out);
      out << evidence::ModelToJson(*model) << "\n";
      if (!out.flush()) Fail(Internal("cannot write " + args->out), "model");
    }
    if (!args->database_url.empty()) {
      auto db = store::EvidenceDb::Connect(args->database_url);
      if (!db.ok()) Fail(db.status(), "database");
      store::ReferenceModelRecord rec;
      rec.name = model->name;
      rec.kind = model->kind;
      rec.calibre = model->calibre;
      rec.pipeline_version = model->pipeline_version;
      rec.model = std::string(EvidenceModel::kModelName);
      rec.params_json = evidence::ModelToJson(*model);
      for (const CmcScore& s : model->km) rec.scores.push_back({true, s.cmc, s.cells});
      for (const CmcScore& s : model->knm) rec.scores.push_back({false, s.cmc, s.cells});
      auto id = (*db)->SaveReferenceModel(rec);
      if (!id.ok()) Fail(id.status(), "store reference model");
      std::printf("stored reference model %lld\n", static_cast<long long>(*id));
    }
    std::printf("%s %s%s: %zu KM / %zu KNM pairs; LR bounds %s to %s%s\n", model->name.c_str(),
                std::string(SignatureKindName(model->kind)).c_str(),
                model->calibre.empty() ? "" : (" " + model->calibre).c_str(), model->km.size(), model->knm.size(),
                LrText(model->log10_lr_lower).c_str(), LrText(model->log10_lr_upper).c_str(),
                model->small_reference ? " (SMALL REFERENCE POPULATION)" : "");
  });
}

}  // namespace

void RegisterEvidenceCommands(CLI::App& app) {
  CLI::App* ev = app.add_subcommand("evidence", "Likelihood ratios and error rates from reference populations");
  ev->require_subcommand(1);
  RegisterValidate(*ev);
  RegisterBuildReference(*ev);
}

}  // namespace ballistics::cli
