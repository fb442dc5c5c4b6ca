#!/bin/sh
# Re-fetch the vendored front-end assets (htmx, Apache ECharts) from the npm registry into
# jiliang/static/vendor/.  Pages never load anything from a CDN: the platform must work on a closed network.
#
#   scripts/vendor_assets.sh                 # the versions pinned below
#   HTMX_VERSION=4.0.1 ECHARTS_VERSION=6.1.0 scripts/vendor_assets.sh
#
# After running it, update the versions and checksums in jiliang/static/vendor/README.md.
set -eu

HTMX_VERSION="${HTMX_VERSION:-4.0.1}"
ECHARTS_VERSION="${ECHARTS_VERSION:-6.1.0}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/jiliang/static/vendor"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

cd "$TMP"
npm pack --silent "htmx.org@$HTMX_VERSION" "echarts@$ECHARTS_VERSION" >/dev/null
mkdir htmx echarts
tar xzf "htmx.org-$HTMX_VERSION.tgz" -C htmx
tar xzf "echarts-$ECHARTS_VERSION.tgz" -C echarts

mkdir -p "$DEST/htmx" "$DEST/echarts"
cp htmx/package/dist/htmx.min.js htmx/package/LICENSE "$DEST/htmx/"
cp echarts/package/dist/echarts.min.js echarts/package/LICENSE echarts/package/NOTICE "$DEST/echarts/"
cp echarts/package/licenses/LICENSE-d3 "$DEST/echarts/"

echo "htmx.org $HTMX_VERSION, echarts $ECHARTS_VERSION copied to $DEST"
sha256sum "$DEST/htmx/htmx.min.js" "$DEST/echarts/echarts.min.js"
