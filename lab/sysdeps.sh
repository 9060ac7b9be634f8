#!/usr/bin/env bash
# Install the system packages the lab and the node-side tests use, when missing.
set -euo pipefail
need=()
command -v iptables-restore >/dev/null || need+=(iptables)
command -v ip >/dev/null || need+=(iproute2)
command -v nsenter >/dev/null || need+=(util-linux)
command -v tar >/dev/null || need+=(tar)
command -v ping >/dev/null || need+=(iputils-ping)  # bench/pod_poke.py times the seed's ping loop
# The real nodes: Debian's container runtime, the standard CNI plugins, and debootstrap
command -v containerd >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v shellcheck >/dev/null || need+=(shellcheck)  # ansible-test sanity checks the shell scripts with it
command -v go >/dev/null || { echo "the lab builds its cluster with Go (1.25 or newer): install it first" >&2; exit 1; }
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${need[*]} (run as root, or install them)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
