#!/usr/bin/env bash
# Saves a PNG of each page of the web dashboard (login, the therapist's
# patients, a patient's page, a game's page, a patient's own view) into
# docs/screenshots/ (or the directory given), from a headless chromium at
# 1280x900 against an app filled with several weeks of generated games.
#
#   scripts/screenshots.sh [DIRECTORY]
#
# Needs chromium and chromedriver (apt-get install chromium chromium-driver).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(realpath -m "${1:-docs/screenshots}")
mkdir -p "$dir"
M2M_SCREENSHOTS="$dir" cargo test -p m2m --test browser -- \
  --ignored --exact screenshots::screenshots_of_every_page --nocapture
ls -l "$dir"/*.png
