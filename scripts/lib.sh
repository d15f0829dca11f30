# Shared helpers for the setup scripts: named steps, logs per step, resumable stamps.
# Sourced, never executed.

PRESCALE_CACHE_DIR="${PRESCALE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/prescale}"
export PRESCALE_CACHE_DIR
LOG_DIR="${PRESCALE_CACHE_DIR}/logs"
mkdir -p "$LOG_DIR"

_ts() { date -u +%H:%M:%S; }
info() { printf '[%s] %s\n' "$(_ts)" "$*" >&2; }

# step NAME CMD...: runs CMD with output in a per-step log; on failure names the step,
# the command and the log, and exits.
step() {
  local name="$1"; shift
  local log="$LOG_DIR/${name}.log"
  local t0=$SECONDS
  info "step ${name}: start (log: ${log})"
  if "$@" >"$log" 2>&1; then
    info "step ${name}: done in $((SECONDS - t0))s"
  else
    local rc=$?
    info "step ${name}: FAILED (exit ${rc}) after $((SECONDS - t0))s"
    info "  command: $*"
    info "  log:     ${log} (last lines below)"
    tail -n 25 "$log" | sed 's/^/    | /' >&2
    info "  fix the cause and run the same command again: finished steps are kept."
    exit "$rc"
  fi
}

need() {
  command -v "$1" >/dev/null 2>&1 || { info "missing tool '$1': $2"; exit 127; }
}
