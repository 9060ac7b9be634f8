#!/usr/bin/env bash
# Build promtool from the published Prometheus Go module, cached by version.
#
#   lab/build_promtool.sh      build it when missing, print the path of the binary
#
# The binary goes to ${NETMEND_LAB_CACHE:-$HOME/.cache/netmend-lab}/bin/promtool-<version>,
# never into the repository; a .ok file marks a finished build, so an interrupted one is redone.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lab/promtool.env
. "$here/promtool.env"

cache=${NETMEND_LAB_CACHE:-$HOME/.cache/netmend-lab}
out="$cache/bin/promtool-$PROMTOOL_VERSION"
export GOFLAGS="${GOFLAGS:--buildvcs=false} -trimpath"
export CGO_ENABLED=0

if [ ! -f "$out/.ok" ]; then
  printf '[lab build] building promtool %s\n' "$PROMTOOL_VERSION" >&2
  work="$cache/work/promtool-$PROMTOOL_VERSION"
  rm -rf "$work"; mkdir -p "$work" "$out"
  printf 'module netmend.lab/promtool\n\ngo 1.24\n\nrequire github.com/prometheus/prometheus %s\n' \
    "$PROMTOOL_VERSION" >"$work/go.mod"
  (
    cd "$work"
    # Getting the command package records every go.sum entry it needs at the module's own requirements.
    go get "github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_VERSION" >/dev/null
    go build -ldflags "-s -w -X github.com/prometheus/common/version.Version=${PROMTOOL_VERSION#v}" \
      -o "$out/promtool" github.com/prometheus/prometheus/cmd/promtool
  )
  touch "$out/.ok"
fi
echo "$out/promtool"
