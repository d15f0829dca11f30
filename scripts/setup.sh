#!/usr/bin/env bash
# One idempotent set-up for a fresh machine: Debian packages, the Python virtual environment,
# and the Go-built control plane. Every step is skipped when its result is already there, so
# a second run after a failure resumes where the first one stopped.
#   scripts/setup.sh            everything
#   scripts/setup.sh --no-k8s   skip the control-plane build (unit tests and --no-cluster demo)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
# shellcheck source=lib.sh
. "$here/lib.sh"

with_k8s=1
for a in "$@"; do
  case "$a" in
    --no-k8s) with_k8s=0 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) info "unknown option '$a' (allowed: --no-k8s, --help)"; exit 2 ;;
  esac
done

APT_PKGS="prometheus prometheus-alertmanager iproute2 openssl wrk"
apt_install() {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $APT_PKGS
}
missing=""
for t in prometheus promtool prometheus-alertmanager amtool ip openssl wrk; do
  command -v "$t" >/dev/null 2>&1 || missing="$missing $t"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null; then
    info "missing tools:$missing; install the Debian packages '$APT_PKGS' as root"; exit 1
  fi
  [ "$(id -u)" = 0 ] || apt_install() { sudo -E bash -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $APT_PKGS"; }
  step apt-packages apt_install
fi

need python3 "install Python 3.11 or newer"
venv_python() {
  python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
    echo "Python $(python3 -V) is too old: prescale needs 3.11 or newer"; return 1; }
  [ -x "$root/.venv/bin/python" ] || python3 -m venv "$root/.venv"
  "$root/.venv/bin/python" -m pip install -q --upgrade pip
  "$root/.venv/bin/python" -m pip install -q -c "$root/constraints.txt" -e "$root[test]"
}
stamp="$root/.venv/.installed-$(cat "$root/pyproject.toml" "$root/constraints.txt" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  step python-venv venv_python
  rm -f "$root"/.venv/.installed-*; touch "$stamp"
else
  info "python venv up to date (.venv)"
fi

if [ "$with_k8s" = 1 ]; then
  "$here/build-k8s.sh"
fi
info "setup complete"
