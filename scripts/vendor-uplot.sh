#!/usr/bin/env bash
# Copies uPlot (the console's chart library) from node_modules into core/assets/vendor/uplot/, where
# core compiles it in (core/src/console/api.rs) and serves it under /assets/console/. The copy is
# committed so core builds offline; run this after changing the pinned version in package.json.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules/uplot ] || npm install --no-audit --no-fund --loglevel=error
version=$(node -p "require('./node_modules/uplot/package.json').version")
pinned=$(node -p "require('./package.json').devDependencies.uplot")
[ "$version" = "$pinned" ] || { echo "node_modules has uPlot $version, package.json pins $pinned: run npm install" >&2; exit 1; }
dest=core/assets/vendor/uplot
mkdir -p "$dest"
cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css node_modules/uplot/LICENSE "$dest/"
echo "uPlot $version (MIT, https://github.com/leeoniya/uPlot), from npm by scripts/vendor-uplot.sh" > "$dest/VERSION"
echo "vendored uPlot $version into $dest"
