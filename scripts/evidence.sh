#!/usr/bin/env bash
# Evidence strength on the reference scans: writes the "Evidence strength"
# section of docs/accuracy.md (also kept in docs/accuracy-evidence.md, which
# scripts/accuracy.sh appends when it regenerates accuracy.md) and the plots
# docs/img/evidence_*.png.
#   ./scripts/evidence.sh                    (builds into build/ if ballisticsctl is missing)
#   BUILD_DIR=build-x ./scripts/evidence.sh
#   FADUL_CSV=f.csv DFSC_CSV=d.csv DFSC_RAW_CSV=r.csv ./scripts/evidence.sh   (reuse score-pairs output)
# Steps: score-pairs on Fadul (780 pairs), the DFSC processed and raw scans
# (default correlator, orientation unknown); `evidence validate` on each
# (leave-source-out: Fadul slides, DFSC firearms); `evidence build-reference`
# on Fadul; `compare` of the DFSC KM pair with the Fadul model. Minutes on 2 cores.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

BUILD_DIR="${BUILD_DIR:-$REPO_ROOT/build}"
DATA="${BALLISTICS_SHARED_DATA_DIR:-$REPO_ROOT/../shared/data}"
CTL="$BUILD_DIR/src/cli/ballisticsctl"
OUT_MD="${OUT_MD:-$REPO_ROOT/docs/accuracy.md}"
SECTION_MD="$REPO_ROOT/docs/accuracy-evidence.md"
IMG="$REPO_ROOT/docs/img"
THREADS="${THREADS:-$(nproc)}"
[ -d "$DATA/fadul" ] || die "reference scans not found at $DATA (set BALLISTICS_SHARED_DATA_DIR)"
[ -x "$CTL" ] || build_project "$BUILD_DIR"
mkdir -p "$IMG"

WORK="$(mktemp -d /tmp/ballistics-evidence.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
KEEP_DIR="${KEEP_DIR:-}"  # copy the CSVs and JSON here (for reuse via FADUL_CSV=...)

score() {  # score NAME PRESET_CSV score-pairs-args...
  local name="$1" preset="$2"; shift 2
  if [ -n "$preset" ]; then
    cp "$preset" "$WORK/$name.csv"
  else
    log "score-pairs $name"
    "$CTL" score-pairs "$@" --out "$WORK/$name.csv" --threads "$THREADS"
  fi
}
score fadul "${FADUL_CSV:-}" "$DATA/fadul"
score dfsc "${DFSC_CSV:-}" "$DATA/dfsc" --include _processed
score dfsc_raw "${DFSC_RAW_CSV:-}" "$DATA/dfsc" --exclude _processed

log "evidence validate"
"$CTL" evidence validate "$WORK/fadul.csv" --truth "$DATA/fadul/ground_truth.csv" --name evidence_fadul \
  --out-dir "$IMG" --lr-csv "$WORK/fadul_lr.csv" --json > "$WORK/fadul.json"
"$CTL" evidence validate "$WORK/dfsc.csv" --source-regex '^(K[0-9]+)' --name evidence_dfsc \
  --out-dir "$IMG" --lr-csv "$WORK/dfsc_lr.csv" --json > "$WORK/dfsc.json"
"$CTL" evidence validate "$WORK/dfsc_raw.csv" --source-regex '^(K[0-9]+)' --name evidence_dfsc_raw \
  --lr-csv "$WORK/dfsc_raw_lr.csv" --json > "$WORK/dfsc_raw.json"
"$CTL" evidence build-reference "$WORK/fadul.csv" --truth "$DATA/fadul/ground_truth.csv" --name fadul \
  --out "$WORK/fadul_bf.json" > "$WORK/build.txt"
"$CTL" compare "$DATA/dfsc/K013sA1_processed.x3p" "$DATA/dfsc/K013sA2_processed.x3p" \
  --reference-model "$WORK/fadul_bf.json" > "$WORK/compare.txt" 2>&1 || true
log "DFSC processed scored with the Fadul reference model"
"$CTL" score-pairs "$DATA/dfsc" --include _processed --reference-model "$WORK/fadul_bf.json" \
  --out "$WORK/dfsc_fadul_model.csv" --threads "$THREADS"
"$CTL" compare "$DATA/dfsc/K013sA1_processed.x3p" "$DATA/dfsc/K013sA2_processed.x3p" \
  > "$WORK/compare_none.txt" 2>&1 || true

python3 - "$WORK" "$(git -C "$REPO_ROOT" rev-parse --short HEAD)" "$DATA" > "$SECTION_MD" <<'EOF'
import csv, json, math, sys, datetime
work, commit, data_dir = sys.argv[1], sys.argv[2], sys.argv[3].rstrip("/")
def load(n): return json.load(open(f"{work}/{n}.json"))
def lr(x):
    return f"{10**x:.0f}" if x >= 2 else (f"{10**x:.3g}" if x >= 0 else f"1/{10**-x:.3g}")
def ci(i, digits=3): return f"{i['lower']:.{digits}g}-{i['upper']:.{digits}g}"
def row(label, j):
    return (f"| {label} | {j['km']} / {j['knm']} | {j['cllr']:.4f} | {j['cllr_min']:.4f} | "
            f"{j['km_misleading']} of {j['km']} ({ci(j['rmep'])}) | {j['knm_misleading']} of {j['knm']} "
            f"({ci(j['rmed'])}) | {lr(j['min_log10_lr_km'])} | {lr(j['max_log10_lr_knm'])} | {j['lr_unavailable']} |")
f, d, r = load("fadul"), load("dfsc"), load("dfsc_raw")
print(f"""## Evidence strength

Produced by `scripts/evidence.sh` ({datetime.date.today()}, commit {commit}) from `ballisticsctl score-pairs`
(default correlator, orientation unknown) and `ballisticsctl evidence validate`. Model and references:
`include/ballistics/evidence.h`.

**Model.** The pair score is the CMC count c out of N cells. The KM and the KNM counts of a reference
population are each fitted with a beta-binomial distribution (maximum likelihood), and
LR(c, N) = BB(c; N, KM) / BB(c; N, KNM) (a score-based LR in the sense of Riva & Champod 2014; the
beta-binomial takes the overdispersion of CMC counts into account, cf. Zemmels et al. 2023). The
ratio of two fits says nothing trustworthy where the reference data end, so every LR is clamped to
the empirical lower and upper bounds (ELUB, Vergeer et al. 2016): the LR system, with one misleading
dummy pair added per hypothesis, must do at least as well as LR = 1 at every threshold up to the
bound. The bounds grow with the reference sizes only (perfectly separated data: upper bound
(N_KNM + 1) N_KM / (N_KM + 1)); with fewer than 20 KM or KNM pairs an LR is flagged as resting on a small
reference population; with no KM or no KNM pair there is no LR at all ("no calibrated LR available")
and only the raw score is reported. Error rates follow Song et al. 2018: CMC ~ Binomial(N, p), with
p_KNM and p_KM estimated from the pooled reference cells; false-positive rate = P(CMC >= 6 | KNM),
false-negative rate = P(CMC < 6 | KM), averaged over the reference pairs' N, with the empirical
rates next to them; all intervals are 95 % Clopper-Pearson.

**Validation.** Leave-source-out cross-validation: every pair gets its LR from a model fitted on
the pairs that involve neither of its two sources (Fadul: slides, DFSC: firearms); for a KM pair that
is leave-one-slide-out. Cllr and Cllr-min (after PAV; Brümmer & du Preez 2006) in bits (1 = the
neutral system, 0 = perfect); misleading evidence = KM pairs with LR < 1, KNM pairs with LR > 1.
Pairs without a calibrated LR count as LR = 1 in Cllr.

| data (leave-source-out) | KM / KNM | Cllr | Cllr-min | KM with LR < 1 (95 % CI) | KNM with LR > 1 (95 % CI) | lowest KM LR | highest KNM LR | pairs without LR |
|---|---|---|---|---|---|---|---|---|
{row("Fadul, 40 scans, 10 slides", f)}
{row("DFSC processed, 5 scans, 3 firearms", d)}
{row("DFSC raw, 8 scans, 7 firearms", r)}

Fadul, leave-one-slide-out: **{f['knm_misleading']} KNM pairs with LR > 1 and {f['km_misleading']} KM pairs with LR < 1**;
Cllr {f['cllr']:.4f} against Cllr-min {f['cllr_min']:.4f}. Cllr-min is 0 because the KM and KNM CMC counts do not
overlap, so PAV can separate them perfectly; the remaining Cllr is the price of the ELUB bounds
(no LR beyond about the number of reference pairs), i.e. of not claiming more than 63 KM and
717 KNM comparisons can show. The DFSC rows are honest about tiny reference populations: leaving a
firearm out leaves at most one KM pair, so most pairs get no LR and the others are bounded close to 1
(a Cllr near or even above the neutral 1 is the honest result of having almost no reference data).

![Tippett plot, Fadul](img/evidence_fadul_tippett.png)

![ECE plot, Fadul](img/evidence_fadul_ece.png)

![Tippett plot, DFSC processed](img/evidence_dfsc_tippett.png)
""")
fm = f["full_model"]; e = fm["error_rates"]
print(f"""### Error rates at CMC >= {e['threshold_cmc']} and LR bounds, whole Fadul population (what `evidence build-reference` stores)

| | KNM side (false positives) | KM side (false negatives) |
|---|---|---|
| reference pairs | {e['knm_pairs']} | {e['km_pairs']} |
| empirical rate (95 % CI) | {e['false_positives']} of {e['knm_pairs']} ({ci(e['empirical_fpr'])}) | {e['false_negatives']} of {e['km_pairs']} ({ci(e['empirical_fnr'])}) |
| per-cell congruence p (95 % CI) | {e['p_knm']['estimate']:.4f} ({ci(e['p_knm'])}) | {e['p_km']['estimate']:.4f} ({ci(e['p_km'])}) |
| binomial model rate (Song et al. 2018) | {e['binomial_fpr']['estimate']:.3g} ({ci(e['binomial_fpr'])}) | {e['binomial_fnr']['estimate']:.3g} ({ci(e['binomial_fnr'])}) |

ELUB bounds of the whole-population model: LR {lr(fm['log10_lr_lower'])} to {lr(fm['log10_lr_upper'])}.
Beta-binomial fits: KM alpha {fm['km_fit']['alpha']:.3g}, beta {fm['km_fit']['beta']:.3g}; KNM alpha
{fm['knm_fit']['alpha']:.3g}, beta {fm['knm_fit']['beta']:.3g} (alpha + beta at the fit's upper limit of 10^6 means:
no spread beyond a binomial). The KNM counts are in fact *less* spread than a binomial: almost every KNM
pair has exactly one CMC, because the consensus transform is fitted to the cells, so about one cell
agrees with it by construction. Neither the binomial nor the beta-binomial is therefore a first-principles
model of the KNM tail; the binomial false-positive rate is a model-based extrapolation, to be read next
to the empirical interval, not instead of it, and the LR never leaves the ELUB bounds that only the
reference sizes set.
""")
rows = list(csv.DictReader(open(f"{work}/dfsc_fadul_model.csv")))
print("### DFSC processed pairs with the Fadul reference model (another firearm model, another scanner)\n")
print("| reference | target | truth | CMC / cells | LR | basis |\n|---|---|---|---|---|---|")
for x in rows:
    truth = "KM" if x["reference"][:4] == x["target"][:4] else "KNM"
    l = float(x["log10_lr"]) if x["log10_lr"] else None
    shown = lr(l) if l is not None else "none"
    if (truth == "KM") != (l is not None and l > 0): shown = f"**{shown}** (misleading)"
    print(f"| {x['reference']} | {x['target']} | {truth} | {x['cmc']} / {x['cells']} | {shown} | {x['lr_basis']} |")
print("""
A reference population says nothing about firearms unlike its own: the K227iG3/K002 KNM pairs, which
the correlator scores as high as KM pairs (see the DFSC table above), get the largest LR the Fadul data
support. This is why the basis is printed next to every LR, and why models are kept per calibre
(`--calibre`, table reference_populations) and per pipeline version.
""")
print("### Every score with its LR: `compare` of the DFSC KM pair K013sA1/K013sA2 with the Fadul model\n")
print("(a reference population of another firearm model and scanner: the basis line says so)\n\n```")
print(open(f"{work}/compare.txt").read().rstrip().replace(data_dir, "../shared/data"))
print("```\n\nWithout a reference model:\n\n```")
print(open(f"{work}/compare_none.txt").read().rstrip().replace(data_dir, "../shared/data"))
print("```\n")
print("""Commands: `ballisticsctl evidence validate PAIRS.csv --truth fadul/ground_truth.csv --out-dir docs/img`
(or `--source-regex '^(K[0-9]+)'` for names that carry the firearm), `ballisticsctl evidence build-reference
PAIRS.csv --truth ... --out model.json [--database-url URL]`, then `compare` / `score-pairs` with
`--reference-model model.json` or `--reference-db URL` (score-pairs adds the columns lr, log10_lr,
lr_at_bound, lr_km_pairs, lr_knm_pairs, lr_basis, fp_lr, fp_log10_lr, fp_lr_basis). The server's
searches use the newest stored model of the current pipeline version for each kind and record the LR
and basis with every comparison (Search, GetSearch, GetComparison, the examiner report).

Why the reference is built from a scored CSV and ground truth rather than from the stored casings with
a known firearm: a reference population must be scored by exactly the engine whose scores it
calibrates, pair by pair, with known truth; `score-pairs` does that for any set of scans (validation
sets such as Fadul included, which are not casework and should not sit in the casework tables), and
the pipeline version stored with the population (table reference_populations) keeps a model from
being applied to scores of another version.""")
EOF

# Replace (or add) the section at the end of accuracy.md.
if [ -f "$OUT_MD" ]; then
  # Everything before the old section, without its trailing blank lines.
  awk '/^## Evidence strength$/ { exit } { print }' "$OUT_MD" | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}' > "$WORK/accuracy.md"
  { cat "$WORK/accuracy.md"; echo; cat "$SECTION_MD"; } > "$OUT_MD.tmp"
  mv "$OUT_MD.tmp" "$OUT_MD"
fi
if [ -n "$KEEP_DIR" ]; then mkdir -p "$KEEP_DIR"; cp "$WORK"/*.csv "$WORK"/*.json "$KEEP_DIR"/; fi
log "wrote $SECTION_MD, its copy in $OUT_MD and $IMG/evidence_*.png"
