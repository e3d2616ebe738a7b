#!/usr/bin/env bash
# Regenerate both locks with one clean resolve each:
#   requirements-runtime.txt  <- requirements-runtime.in (what the Dockerfile installs)
#   requirements.txt          <- requirements.in (runtime + dev tools; runtime pins unchanged)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-$(command -v python3.11 || command -v python3)}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$PY" -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --upgrade pip
"$tmp/venv/bin/pip" install -q -r requirements-runtime.in
"$tmp/venv/bin/pip" freeze --exclude-editable | LC_ALL=C sort -f > requirements-runtime.txt
# the dev tools resolve around the runtime pins, so both files agree on every shared package
"$tmp/venv/bin/pip" install -q -r requirements.in -c requirements-runtime.txt
"$tmp/venv/bin/pip" freeze --exclude-editable | LC_ALL=C sort -f > requirements.txt
echo "requirements-runtime.txt: $(wc -l < requirements-runtime.txt) pins; requirements.txt: $(wc -l < requirements.txt) pins"
