#!/usr/bin/env bash
# tools/check_report_html.sh REPORT_DIR — renders a `symbiont report` output in a real headless
# browser (Chromium) and fails when the browser fails, when the rendered DOM of report.html lacks
# the inline <svg> charts, or when one of the .svg files beside it does not parse as XML.
# Writes REPORT_DIR/report.png (a 1200×3000 screenshot) to look at.
#
# Needs Chromium: `apt-get install -y chromium` (Debian) or chromium-browser / google-chrome on PATH;
# CHROMIUM=/path/to/browser overrides. Example, on the test suite's fixture run:
#   SYMBIONT_REPORT_FIXTURE_OUT=/tmp/report-fixture cargo test --release -p symbiont-flow --test report
#   tools/check_report_html.sh /tmp/report-fixture
set -euo pipefail

dir=${1:?usage: tools/check_report_html.sh REPORT_DIR}
dir=$(cd "$dir" && pwd)
html="$dir/report.html"
[[ -f $html ]] || { echo "error: $html not found" >&2; exit 2; }

browser=${CHROMIUM:-}
if [[ -z $browser ]]; then
    for b in chromium chromium-browser google-chrome; do
        if command -v "$b" >/dev/null; then browser=$b; break; fi
    done
fi
[[ -n $browser ]] || { echo "error: no Chromium found (apt-get install -y chromium)" >&2; exit 2; }

profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
run() {
    timeout 120 "$browser" --headless --disable-gpu --no-sandbox --hide-scrollbars \
        --no-first-run --user-data-dir="$profile" "$@" 2>>"$profile/stderr.log"
}
fail() {
    echo "FAIL: $*" >&2
    # The browser's own messages, less the D-Bus noise of a machine without a session bus.
    grep -v -e 'dbus/' "$profile/stderr.log" | tail -n 20 >&2 || true
    exit 1
}

# Charts expected: one inline <svg> per .svg file written beside the report.
shopt -s nullglob
svgs=("$dir"/*.svg)
want=${#svgs[@]}
(( want > 0 )) || fail "no .svg charts beside $html"

png="$dir/report.png"
rm -f "$png"
run --screenshot="$png" --window-size=1200,3000 "file://$html" >/dev/null ||
    fail "the browser failed to screenshot $html"
[[ -s $png ]] || fail "no screenshot written"
[[ $(head -c 8 "$png" | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]] ||
    fail "$png is not a PNG"

dom=$(run --dump-dom "file://$html") || fail "the browser failed to load $html"
got=$(grep -o '<svg[ >]' <<<"$dom" | wc -l)
closed=$(grep -o '</svg>' <<<"$dom" | wc -l)
(( got == want && closed == want )) ||
    fail "rendered DOM has $got <svg> / $closed </svg>, expected $want (one per .svg file)"
for el in '<table' '<polyline' '<circle' '<text'; do
    grep -q "$el" <<<"$dom" || fail "rendered DOM has no $el element"
done

for f in "${svgs[@]}"; do
    d=$(run --dump-dom "file://$f") || fail "the browser failed to load $f"
    if grep -q 'parsererror' <<<"$d" || ! grep -q '<svg' <<<"$d"; then
        fail "$f does not parse as SVG"
    fi
done

echo "ok: $html renders ($want charts inline, ${#svgs[@]} .svg files parse); screenshot $png"
