#!/usr/bin/env bash
# medseg segment from the command line: a real segmentation end to end, then every bad-input
# path: each must print one "medseg: ..." line naming the file or the problem, exit non-zero,
# and leave no output file behind.
# usage: bash cli_segment.sh MEDSEG_BIN SHARED MODEL_DIR
set -u
BIN=$1 SHARED=$2 MODELS=$3
export MEDSEG_MODEL_DIR=$MODELS
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }

IMG=$SHARED/data/sammed2d_demo/images/amos_0004_75.png
GT=$SHARED/data/sammed2d_demo/masks/amos_0004_75_liver_000.png
MODEL=$MODELS/minisam.safetensors

# expect_fail NAME PATTERN OUTPUT_FILE -- cmd...: non-zero exit, stderr matches PATTERN, no OUTPUT_FILE
expect_fail() {
  local name=$1 pat=$2 out=$3; shift 3
  rm -f "$out"
  "$@" >"$T/stdout" 2>"$T/stderr"; local rc=$?
  local msg; msg=$(cat "$T/stderr")
  if [ $rc -eq 0 ]; then bad "$name: exit 0"; return; fi
  if ! grep -qE -- "$pat" "$T/stderr"; then bad "$name: message '$msg' does not match /$pat/"; return; fi
  if [ -e "$out" ] || ls "$out".tmp.* >/dev/null 2>&1; then bad "$name: output file left behind"; return; fi
  ok "$name (exit $rc: $msg)"
}

# 1. a real segmentation: the liver in the example CT slice, box = the ground truth's bounds;
#    the official MobileSAM pipeline gets Dice 0.8247 with this box (golden/dice)
out=$T/liver.png
if "$BIN" segment "$IMG" --box 153,237,221,294 -o "$out" --overlay "$T/overlay.png" --json --model "$MODEL" >"$T/json" 2>"$T/err"; then
  if /usr/bin/python3 - "$out" "$GT" "$T/overlay.png" <<'PY'
import sys, numpy as np
from PIL import Image
m = np.array(Image.open(sys.argv[1])); g = np.array(Image.open(sys.argv[2]))
if g.ndim == 3: g = g[..., 0]
assert m.shape == g.shape, (m.shape, g.shape)
assert set(np.unique(m)) <= {0, 255}, np.unique(m)
p, t = m > 0, g > 0
d = 2 * (p & t).sum() / (p.sum() + t.sum())
print(f"dice {d:.4f}")
assert abs(d - 0.824722) < 0.005, d
o = Image.open(sys.argv[3]); assert o.size == (g.shape[1], g.shape[0]) and o.mode == "RGB", (o.size, o.mode)
PY
  then ok "segment liver: $(cat "$T/json")"; else bad "segment liver: wrong mask"; fi
else
  bad "segment liver: exit $? $(cat "$T/err")"
fi
# multimask writes three files, the JSON names them
if "$BIN" segment "$IMG" --point 187,265 --multimask -o "$T/mm.png" --json --model "$MODEL" >"$T/json" 2>"$T/err" &&
   [ -s "$T/mm-1.png" ] && [ -s "$T/mm-2.png" ] && [ -s "$T/mm-3.png" ] && grep -q '"token": 3' "$T/json"; then
  ok "multimask: three masks"
else
  bad "multimask: $(cat "$T/err")"
fi
# previous logits fed back as --mask-input
if "$BIN" segment "$IMG" --point 175,255 --point 200,275 --point 243,244,0 -o "$T/a.png" --save-logits "$T/a.npy" --model "$MODEL" >/dev/null 2>"$T/err" &&
   "$BIN" segment "$IMG" --box 150,234,224,297 --mask-input "$T/a.npy" -o "$T/b.png" --model "$MODEL" >/dev/null 2>>"$T/err" && [ -s "$T/b.png" ]; then
  ok "mask input round trip"
else
  bad "mask input round trip: $(cat "$T/err")"
fi

# 2. bad input
head -c 3000 "$IMG" > "$T/truncated.png"
head -c 4096 /dev/urandom > "$T/noise.png"
printf 'not an image' > "$T/text.png"
head -c 100000 "$MODEL" > "$T/truncated.safetensors"
# a valid safetensors file holding one tensor that no SAM model has
printf '\x40\x00\x00\x00\x00\x00\x00\x00{"a.weight":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}   \x00\x00\x00\x00' > "$T/bogus.safetensors"
o=$T/out.png
expect_fail "missing image"        "nonexistent\.png"            "$o" "$BIN" segment "$T/nonexistent.png" --box 1,1,20,20 -o "$o" --model "$MODEL"
expect_fail "truncated image"      "truncated\.png"              "$o" "$BIN" segment "$T/truncated.png" --box 1,1,20,20 -o "$o" --model "$MODEL"
expect_fail "random bytes image"   "noise\.png"                  "$o" "$BIN" segment "$T/noise.png" --box 1,1,20,20 -o "$o" --model "$MODEL"
expect_fail "text file as image"   "text\.png"                   "$o" "$BIN" segment "$T/text.png" --box 1,1,20,20 -o "$o" --model "$MODEL"
expect_fail "missing model"        "no_such_model"               "$o" "$BIN" segment "$IMG" --box 1,1,20,20 -o "$o" --model no_such_model
expect_fail "truncated model"      "truncated\.safetensors"      "$o" "$BIN" segment "$IMG" --box 1,1,20,20 -o "$o" --model "$T/truncated.safetensors"
expect_fail "not a SAM model"      "bogus\.safetensors"          "$o" "$BIN" segment "$IMG" --box 1,1,20,20 -o "$o" --model "$T/bogus.safetensors"
expect_fail "box outside image"    "outside"                     "$o" "$BIN" segment "$IMG" --box 400,400,600,600 -o "$o" --model "$MODEL"
expect_fail "zero-size box"        "zero"                        "$o" "$BIN" segment "$IMG" --box 100,100,100,150 -o "$o" --model "$MODEL"
expect_fail "point outside image"  "outside"                     "$o" "$BIN" segment "$IMG" --point 900,10 -o "$o" --model "$MODEL"
expect_fail "no prompt"            "no prompt"                   "$o" "$BIN" segment "$IMG" -o "$o" --model "$MODEL"
expect_fail "malformed box"        "--box"                       "$o" "$BIN" segment "$IMG" --box 1,2,3 -o "$o" --model "$MODEL"
expect_fail "bad mask input"       "noise\.png"                  "$o" "$BIN" segment "$IMG" --box 1,1,20,20 --mask-input "$T/noise.png" -o "$o" --model "$MODEL"
expect_fail "unwritable output"    "no_dir"                      "$T/no_dir/x.png" "$BIN" segment "$IMG" --box 1,1,20,20 -o "$T/no_dir/x.png" --model "$MODEL"
# the overlay cannot be written: the mask written before it must be removed too
expect_fail "overlay unwritable"   "no_dir"                      "$o" "$BIN" segment "$IMG" --box 153,237,221,294 -o "$o" --overlay "$T/no_dir/o.png" --model "$MODEL"

echo "cli_segment: $pass passed, $fail failed"
[ $fail -eq 0 ]
