#!/usr/bin/env bash
# Every check CI runs, in order: ruff, mypy --strict, import-linter contracts, gofmt and go vet,
# then pytest
# (warnings are errors, per-test timeout). Extra arguments go to pytest.
#   scripts/check.sh                 everything
#   scripts/check.sh --lint-only     static checks only
#   scripts/check.sh tests/adapter   static checks, then only those tests
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
cd "$root"
# shellcheck source=lib.sh
. "$here/lib.sh"
V="$root/.venv/bin"
[ -x "$V/python" ] || { info "no virtual environment: run scripts/setup.sh first"; exit 1; }

lint_only=0
if [ "${1:-}" = "--lint-only" ]; then lint_only=1; shift; fi

t0=$SECONDS
info "ruff";          "$V/ruff" check .
info "mypy --strict"; "$V/mypy"
# Each test folder has its own conftest and helper modules: one mypy run per folder.
for d in tests/*/; do
  "$V/mypy" --no-error-summary "$d" || { info "mypy failed in $d"; exit 1; }
done
info "import contracts"; "$V/lint-imports" --no-cache
# The Go programs (the queue proxy, the benchmarks' load generator): formatted and vetted.
if command -v go >/dev/null; then
  info "gofmt, go vet"
  for m in serving/queueproxy bench/openloop; do
    unformatted="$(gofmt -l "$m")"
    [ -z "$unformatted" ] || { info "gofmt would change: $unformatted"; exit 1; }
    (cd "$m" && go vet ./...)
  done
fi
[ "$lint_only" = 1 ] && { info "static checks passed in $((SECONDS - t0))s"; exit 0; }
info "pytest"
"$V/pytest" "$@"
info "all checks passed in $((SECONDS - t0))s"
