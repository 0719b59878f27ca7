#!/bin/sh
# Builds the page komlog-hub serves at /web/: installs the pinned tools
# (package-lock.json) into node_modules, then bundles src/ into dist/ with
# esbuild. The output has no timestamps: the same sources give the same files,
# and dist/ is committed (the hub embeds it).
set -eu
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --loglevel=error
rm -rf dist
mkdir -p dist
./node_modules/.bin/esbuild src/app.js --bundle --minify --format=iife \
  --target=es2020 --legal-comments=none --charset=utf8 \
  --outdir=dist --log-level=warning
cp src/index.html dist/index.html
