#!/usr/bin/env bash
# Builds the local control plane from the Go module proxy, once per pinned version:
# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (k8s.io/kubernetes),
# etcd (go.etcd.io/etcd/server/v3), kwok/kwokctl (sigs.k8s.io/kwok) and kube-state-metrics
# (k8s.io/kube-state-metrics/v2, whose go.mod has no replace directives, so `go install` builds it).
# Binaries land in $PRESCALE_CACHE_DIR/k8s/<version>/bin; a finished binary is never rebuilt,
# so a second run after a failure resumes where it stopped.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"
# shellcheck source=versions.env
. "$here/versions.env"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOWORK=off GOFLAGS=-mod=mod
need go "install Go ${GO_MIN} or newer (Debian: golang, or the official tarball)"
BIN="$PRESCALE_CACHE_DIR/k8s/$K8S_VERSION/bin"
mkdir -p "$BIN"
STG="v0.${K8S_VERSION#v1.}"
MINOR="$(echo "$K8S_VERSION" | cut -d. -f2)"

build_kube() {
  local work="$PRESCALE_CACHE_DIR/k8s/$K8S_VERSION/mod"
  mkdir -p "$work"; cd "$work"
  if [ ! -f go.mod ]; then
    go mod init local.invalid/k8sbins
    go mod edit -go=1.26.0 -godebug=default=go1.26
  fi
  local modfile
  modfile="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  grep -E '^(go|toolchain|godebug) ' "$modfile"
  for m in $(sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/src/.*#\1#p' "$modfile"); do
    go mod edit -replace="$m=$m@$STG"
  done
  go mod edit -require="k8s.io/kubernetes@$K8S_VERSION"
  local pkgs="k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl"
  # shellcheck disable=SC2046
  go get $(for p in $pkgs; do printf '%s@%s ' "$p" "$K8S_VERSION"; done)
  local ld="-s -w" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$MINOR -X $p.gitTreeState=clean -X $p.buildDate=2000-01-01T00:00:00Z"
  done
  local out="$work/out"; mkdir -p "$out"
  # One invocation so shared packages compile once; -p 2 matches the machine.
  # shellcheck disable=SC2086
  go build -p 2 -trimpath -tags=selinux,notest,grpcnotrace -ldflags="$ld" -o "$out/" $pkgs
  "$out/kube-apiserver" --version | grep -q "$K8S_VERSION"
  mv "$out"/* "$BIN/"
}

build_etcd() {
  local work="$PRESCALE_CACHE_DIR/k8s/$K8S_VERSION/etcd-mod"
  mkdir -p "$work"; cd "$work"
  [ -f go.mod ] || { go mod init local.invalid/etcdbin; go mod edit -go=1.26.0; }
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  go build -trimpath -ldflags='-s -w' -o "$work/etcd" go.etcd.io/etcd/server/v3
  "$work/etcd" --version | grep -q "${ETCD_VERSION#v}"
  mv "$work/etcd" "$BIN/etcd"
}

build_kwok() {
  GOBIN="$BIN.kwok-tmp" go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
  mv "$BIN.kwok-tmp"/kwok "$BIN.kwok-tmp"/kwokctl "$BIN/"
  rmdir "$BIN.kwok-tmp"
  # The stage definitions ship in the module; keep a copy beside the binaries.
  local src
  src="$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage"
  rm -rf "$BIN/../kwok-stages"; cp -r "$src" "$BIN/../kwok-stages"; chmod -R u+w "$BIN/../kwok-stages"
}

build_ksm() {
  # A module build (like etcd's): `go install pkg@version` would also ask the proxy for the
  # module's version list to check deprecations, which a proxy may refuse.
  local work="$PRESCALE_CACHE_DIR/k8s/$K8S_VERSION/ksm-mod" v="github.com/prometheus/common/version"
  mkdir -p "$work"; cd "$work"
  [ -f go.mod ] || { go mod init local.invalid/ksmbin && go mod edit -go=1.26.0; } || return
  go get "k8s.io/kube-state-metrics/v2@$KSM_VERSION" || return
  go build -trimpath -o "$work/kube-state-metrics" \
    -ldflags="-s -w -X $v.Version=${KSM_VERSION#v} -X $v.Branch=release -X $v.Revision=$KSM_VERSION" \
    k8s.io/kube-state-metrics/v2 || return
  "$work/kube-state-metrics" version 2>&1 | grep -q "${KSM_VERSION#v}" || return
  mv "$work/kube-state-metrics" "$BIN/kube-state-metrics"
}

t0=$SECONDS
[ -x "$BIN/kwokctl" ] && [ -d "$BIN/../kwok-stages" ] || step "go-kwok-$KWOK_VERSION" build_kwok
[ -x "$BIN/etcd" ] || step "go-etcd-$ETCD_VERSION" build_etcd
[ -x "$BIN/kube-state-metrics" ] || step "go-kube-state-metrics-$KSM_VERSION" build_ksm
if [ ! -x "$BIN/kube-apiserver" ] || [ ! -x "$BIN/kubectl" ]; then
  info "building Kubernetes $K8S_VERSION from the module proxy (cold: 20-40 min on 2 cores; cached after)"
  step "go-kubernetes-$K8S_VERSION" build_kube
fi
info "control-plane binaries ready in $BIN ($((SECONDS - t0))s)"
