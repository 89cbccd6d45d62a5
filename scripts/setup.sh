#!/usr/bin/env bash
# Installs what sbx needs on a Debian/Ubuntu machine. Idempotent; run as root.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "setup.sh: run as root" >&2; exit 1; }

pkgs=(crun busybox-static debootstrap e2fsprogs libseccomp-dev iproute2 nftables gcc ca-certificates git python3-matplotlib)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# A current runc (Debian's 1.1.5 lacks the 2025 escape fixes): built from the
# Go module proxy with seccomp support.
RUNC_VERSION=1.5.2
if ! /usr/local/bin/runc --version 2>/dev/null | grep -q "runc version ${RUNC_VERSION}"; then
  echo "setup: building runc ${RUNC_VERSION}"
  tmp=$(mktemp -d)
  (cd "$tmp" && CGO_ENABLED=1 GOBIN=/usr/local/bin go install -tags seccomp "github.com/opencontainers/runc@v${RUNC_VERSION}")
  rm -rf "$tmp"
fi

# crun refuses a v1 host whose hugetlb controller sits in the v2 mount.
if [ -d /sys/fs/cgroup/memory ] && [ ! -e /sys/fs/cgroup/hugetlb/tasks ] && grep -q hugetlb /proc/cgroups; then
  mkdir -p /sys/fs/cgroup/hugetlb
  mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb || true
fi
echo "setup: ok"
