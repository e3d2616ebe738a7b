#!/usr/bin/env bash
# Regenerate requirements.txt (the lock) from requirements.in with one clean resolve.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-$(command -v python3.11 || command -v python3)}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$PY" -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --upgrade pip
"$tmp/venv/bin/pip" install -q -r requirements.in
"$tmp/venv/bin/pip" freeze --exclude-editable | LC_ALL=C sort -f > requirements.txt
echo "requirements.txt: $(wc -l < requirements.txt) pinned packages"
