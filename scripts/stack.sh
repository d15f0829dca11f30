#!/usr/bin/env bash
# Start the local stack (control plane in a private network namespace, Prometheus) in the
# foreground; Ctrl-C stops it. Sets everything up first. Arguments go to 'prescale stack up'.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
"$here/setup.sh"
exec "$(dirname "$here")/.venv/bin/prescale" stack up "$@"
