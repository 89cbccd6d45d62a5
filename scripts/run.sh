#!/usr/bin/env bash
# Starts sbx serve in the background (logging to STATE_DIR/sbx.log), prepares
# the default image on first use, and prints how to talk to it.
set -euo pipefail
state=${1:-/var/lib/sbx}
listen=${2:-127.0.0.1:7070}
bin=$(cd "$(dirname "$0")/.." && pwd)/bin
mkdir -p "$state"
if curl -fsS "http://$listen/healthz" >/dev/null 2>&1; then
  echo "sbx is already serving on $listen"
else
  nohup "$bin/sbx" serve --listen "$listen" --state-dir "$state" >>"$state/sbx.log" 2>&1 &
  for _ in $(seq 100); do curl -fsS "http://$listen/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fsS "http://$listen/healthz" >/dev/null || { echo "sbx did not start; see $state/sbx.log" >&2; tail -20 "$state/sbx.log" >&2; exit 1; }
  echo "sbx serve started on $listen (log: $state/sbx.log)"
fi
export SBX_URL="http://$listen" SBX_API_KEY="$(cat "$state/admin.key")"
"$bin/sbx" image inspect sbx/busybox:latest >/dev/null 2>&1 || "$bin/sbx" image bootstrap --busybox
"$bin/sbx" image inspect sbx/default:latest >/dev/null 2>&1 || "$bin/sbx" image bootstrap
cat <<MSG

sbx is running. In your shell:
  export SBX_URL=$SBX_URL
  export SBX_API_KEY=\$(sudo cat $state/admin.key)
  $bin/sbx create --name hello
  $bin/sbx exec hello -- python3 -c 'print("hi from a sandbox")'
MSG
