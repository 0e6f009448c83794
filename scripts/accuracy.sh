#!/usr/bin/env bash
# Accuracy of the correlate stage on the reference scans; writes docs/accuracy.md.
#   ./scripts/accuracy.sh            (builds into build/ if ballisticsctl is missing)
#   BUILD_DIR=build-x ./scripts/accuracy.sh
#   KEEP_DIR=/tmp/acc ./scripts/accuracy.sh   (also keeps the score-pairs CSVs)
# Runs, with the default thresholds (never fitted on these data):
#   1. Fadul, 780 pairs, orientation unknown (full 360-degree search);
#   2. the same scans each turned by a random angle (0-360) and shifted (up to
#      +-250 um) before normalization (score-pairs --turn-seed), also 360 degrees;
#   3. the DFSC processed scans (all pairs) and the raw DFSC scans;
#   4. the NBIDE 2D pair (2.53 um per pixel).
# Needs ../shared/data (or BALLISTICS_SHARED_DATA_DIR). Takes minutes on 2 cores.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

BUILD_DIR="${BUILD_DIR:-$REPO_ROOT/build}"
DATA="${BALLISTICS_SHARED_DATA_DIR:-$REPO_ROOT/../shared/data}"
CTL="$BUILD_DIR/src/cli/ballisticsctl"
OUT_MD="${OUT_MD:-$REPO_ROOT/docs/accuracy.md}"
TURN_SEED="${TURN_SEED:-20240611}"
THREADS="${THREADS:-$(nproc)}"
[ -d "$DATA/fadul" ] || die "reference scans not found at $DATA (set BALLISTICS_SHARED_DATA_DIR)"
[ -x "$CTL" ] || build_project "$BUILD_DIR"

WORK="$(mktemp -d /tmp/ballistics-accuracy.XXXXXX)"
# KEEP_DIR: copy the score-pairs CSVs there (for scripts/evidence.sh: FADUL_CSV=... DFSC_CSV=...).
KEEP_DIR="${KEEP_DIR:-}"
trap 'if [ -n "$KEEP_DIR" ]; then mkdir -p "$KEEP_DIR" && cp "$WORK"/*.csv "$KEEP_DIR"/ 2>/dev/null || true; fi; rm -rf "$WORK"' EXIT

timed() {  # timed NAME cmd... : runs cmd, records wall seconds in $WORK/NAME.sec
  local name="$1"; shift
  local t0 t1
  t0=$(date +%s.%N)
  "$@"
  t1=$(date +%s.%N)
  echo "$t0 $t1" | awk '{printf "%.0f", $2 - $1}' > "$WORK/$name.sec"
}

log "Fadul, orientation unknown"
timed fadul "$CTL" score-pairs "$DATA/fadul" --out "$WORK/fadul.csv" --threads "$THREADS"
log "Fadul, every scan turned and shifted (seed $TURN_SEED)"
timed turned "$CTL" score-pairs "$DATA/fadul" --out "$WORK/turned.csv" --threads "$THREADS" --turn-seed "$TURN_SEED"
log "DFSC processed scans"
"$CTL" score-pairs "$DATA/dfsc" --include _processed --out "$WORK/dfsc.csv" --threads "$THREADS"
log "DFSC raw scans"
"$CTL" score-pairs "$DATA/dfsc" --exclude _processed --out "$WORK/dfsc_raw.csv" --threads "$THREADS" \
  2> "$WORK/dfsc_raw.err" || true
log "NBIDE 2D pair"
"$CTL" compare "$DATA/nbide-2d/nbide-r-bf-118.png" "$DATA/nbide-2d/nbide-r-bf-129.png" --pixel-um 2.53 \
  > "$WORK/nbide.txt" 2>&1 || true

THRESHOLD=6  # CorrelationConfig::cmc_threshold default (NIST C >= 6)

# fadul_stats CSV: adds the ground truth (same slide = KM) and prints summary lines.
truth_join() {  # CSV -> "cmc km theta dx dy turn_r turn_t ref tgt" per pair
  awk -F, -v gt="$DATA/fadul/ground_truth.csv" '
    BEGIN { while ((getline l < gt) > 0) { split(l, f, ","); slide[f[1]] = f[2] } }
    NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    { km = (slide[$1] == slide[$2]) ? 1 : 0
      tr = ("turn_reference_deg" in col) ? $col["turn_reference_deg"] : 0
      tt = ("turn_target_deg" in col) ? $col["turn_target_deg"] : 0
      print $3, km, $6, $7, $8, tr, tt, $1, $2 }' "$1"
}

summary() {  # lines "cmc km ..." -> markdown table row values
  awk -v thr="$THRESHOLD" '
    { if ($2 == 1) km[nk++] = $1; else knm[nn++] = $1 }
    function sort(a, n,   i, j, t) { for (i = 1; i < n; i++) { t = a[i]; for (j = i - 1; j >= 0 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t } }
    END {
      sort(km, nk); sort(knm, nn)
      auc = 0
      for (i = 0; i < nk; i++) for (j = 0; j < nn; j++) auc += (km[i] > knm[j]) ? 1 : (km[i] == knm[j]) ? 0.5 : 0
      auc /= nk * nn
      fn = 0; fp = 0
      for (i = 0; i < nk; i++) if (km[i] < thr) fn++
      for (j = 0; j < nn; j++) if (knm[j] >= thr) fp++
      printf "| %d / %d | %.4f | %d / %d / %d | %d / %d / %d | %d of %d | %d of %d |\n", nk, nn, auc,
        km[0], km[int(nk / 2)], km[nk - 1], knm[0], knm[int(nn / 2)], knm[nn - 1], fn, nk, fp, nn
    }'
}

histogram() {  # lines "cmc km ..." -> counts of each CMC value for KM and KNM
  awk '{ if ($1 > max) max = $1; if ($2 == 1) k[$1]++; else n[$1]++ }
       END { printf "| CMC |"; for (c = 0; c <= max; c++) printf " %d |", c; printf "\n|---|"
             for (c = 0; c <= max; c++) printf "---|"; printf "\n| KM |"
             for (c = 0; c <= max; c++) printf " %d |", k[c] + 0; printf "\n| KNM |"
             for (c = 0; c <= max; c++) printf " %d |", n[c] + 0; printf "\n" }'
}

truth_join "$WORK/fadul.csv" > "$WORK/fadul.txt"
truth_join "$WORK/turned.csv" > "$WORK/turned.txt"
# NIST's published counts in the same form.
awk -F, 'NR > 1 { print $5, ($3 == "KM") ? 1 : 0 }' "$DATA/fadul/nist_cmc.csv" > "$WORK/nist.txt"

# Angle errors on the turned set: theta_turned should equal theta_aligned + turn_target - turn_reference.
ANGLES="$(awk 'NR == FNR { th[$8 "," $9] = $3; next }
  $2 == 1 { d = $3 - (th[$8 "," $9] + $7 - $6); d = d - 360 * int(d / 360); if (d > 180) d -= 360; if (d < -180) d += 360
            if (d < 0) d = -d; n++; s += d; if (d > m) m = d; if (d > 3) bad++ }
  END { printf "%d KM pairs: mean |error| %.2f deg, max %.2f deg, %d above 3 deg", n, s / n, m, bad + 0 }' \
  "$WORK/fadul.txt" "$WORK/turned.txt")"
KM_ANGLES="$(awk '$2 == 1 { if (min == "" || $3 < min) min = $3; if (max == "" || $3 > max) max = $3 }
  END { printf "%.1f to %.1f", min, max }' "$WORK/fadul.txt")"

dfsc_table() {  # CSV -> markdown rows with KM = same K number
  awk -F, -v thr="$THRESHOLD" 'NR > 1 { a = substr($1, 1, 4); b = substr($2, 1, 4)
    printf "| %s | %s | %s | %d | %d | %.1f | %s |\n", $1, $2, (a == b) ? "KM" : "KNM", $3, $4, $6,
      (($3 >= thr) == (a == b)) ? "correct" : "**error**" }' "$1"
}

NPAIRS_PER_CORE_MS="$(awk -v s="$(cat "$WORK/fadul.sec")" -v t="$THREADS" 'BEGIN { printf "%.0f", s * 1000 * t / 780 }')"

{
  cat <<EOF
# Accuracy of the correlation engine

Produced by \`scripts/accuracy.sh\` ($(date -u +%Y-%m-%d), commit $(git -C "$REPO_ROOT" rev-parse --short HEAD)).
Every number below comes from \`ballisticsctl score-pairs\` / \`compare\` with the **default
configuration** (\`CorrelationConfig{}\`); no threshold was fitted on these data.

## Fadul (40 scans, 780 pairs: 63 KM, 717 KNM)

Pair score = CMC count, the smaller of the two directions. Identification at CMC >= $THRESHOLD.

| run | KM / KNM pairs | AUC | KM CMC min / median / max | KNM CMC min / median / max | false negatives | false positives |
|---|---|---|---|---|---|---|
| NIST published (Song et al. 2018, fadul/nist_cmc.csv) $(summary < "$WORK/nist.txt")
| this engine, orientation unknown (360 deg search) $(summary < "$WORK/fadul.txt")
| this engine, every scan turned 0-360 deg and shifted, 360 deg search $(summary < "$WORK/turned.txt")

Wall-clock time of the first run (on the shared 2-core VM while other builds ran; CPU time per
pair is in docs/benchmarks.md): $(cat "$WORK/fadul.sec") s for 780 pairs on $THREADS threads (about
$NPAIRS_PER_CORE_MS ms per pair per core, including reading and normalizing the 40 scans once).

The true relative rotations of the KM pairs (first run): $KM_ANGLES degrees.
Angle agreement on the turned copies (seed $TURN_SEED): $ANGLES.

### CMC distribution, orientation unknown

$(histogram < "$WORK/fadul.txt")

### CMC distribution, turned and shifted copies

$(histogram < "$WORK/turned.txt")

### NIST's published distribution (their cell layout: 26-35 cells per pair)

$(histogram < "$WORK/nist.txt")

## DFSC (Ruger SR9, Cadre TopMatch), processed scans, all pairs

K013sA1/K013sA2 and K002eG1/K002eG2 are KM; different K numbers are KNM.

| reference | target | truth | CMC | cells | theta (deg) | at C >= $THRESHOLD |
|---|---|---|---|---|---|---|
$(dfsc_table "$WORK/dfsc.csv")

## DFSC raw scans (through the raw-scan segmentation of the preprocess stage)

EOF
  if [ -s "$WORK/dfsc_raw.csv" ]; then
    echo "| reference | target | truth | CMC | cells | theta (deg) | at C >= $THRESHOLD |"
    echo "|---|---|---|---|---|---|---|"
    dfsc_table "$WORK/dfsc_raw.csv"
  else
    echo "Not scored: \`score-pairs\` stopped with"
    echo
    echo '```'
    cat "$WORK/dfsc_raw.err"
    echo '```'
  fi
  cat <<EOF

## NBIDE 2D pair (ring-light images, 2.53 um per pixel; published: match at about -15 degrees)

\`\`\`
$(cat "$WORK/nbide.txt")
\`\`\`

EOF
  cat "$REPO_ROOT/docs/accuracy-method.md"
  # The "Evidence strength" section, written by scripts/evidence.sh.
  if [ -f "$REPO_ROOT/docs/accuracy-evidence.md" ]; then echo; cat "$REPO_ROOT/docs/accuracy-evidence.md"; fi
} > "$OUT_MD.tmp"
mv "$OUT_MD.tmp" "$OUT_MD"
log "wrote $OUT_MD"
