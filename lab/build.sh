#!/usr/bin/env bash
# Build the lab cluster's binaries from their published Go modules, cached by version,
# and the real nodes' container images (lab/images.py, root only: debootstrap).
#
#   lab/build.sh            build whatever is missing, print the bin directory
#   lab/build.sh promtool   build only the named components (etcd, kwok, kube, images, promtool)
#
# Binaries go to ${NETMEND_LAB_CACHE:-$HOME/.cache/netmend-lab}/bin/<component>-<version>/,
# never into the repository. A finished build is marked by a .ok file, so an
# interrupted build is redone rather than trusted.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lab/versions.env
. "$here/versions.env"

cache=${NETMEND_LAB_CACHE:-$HOME/.cache/netmend-lab}
export GOFLAGS="${GOFLAGS:--buildvcs=false} -trimpath"
export CGO_ENABLED=0

log() { printf '[lab build] %s\n' "$*" >&2; }

# wrapper_module DIR MODULE-LINES...: a throwaway main module that requires what we build.
wrapper_module() {
  local dir=$1; shift
  rm -rf "$dir"; mkdir -p "$dir"
  printf 'module netmend.lab/build\n\ngo 1.24\n' >"$dir/go.mod"
  printf '%s\n' "$@" >>"$dir/go.mod"
}

build_kube() {
  local out="$cache/bin/kube-$KUBE_VERSION"
  local cmds=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
  local built=1 c
  for c in "${cmds[@]}"; do [ -x "$out/$c" ] || built=0; done
  [ -f "$out/.ok" ] && [ $built = 1 ] && return 0
  log "building ${cmds[*]} $KUBE_VERSION"
  local work="$cache/work/kube-$KUBE_VERSION"
  local gomod
  gomod=$(cd /tmp && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  # k8s.io/kubernetes points its staging modules at ./staging/src/...; outside its own
  # tree those must come from the published k8s.io/* modules of the matching version.
  local replaces
  replaces=$(sed -nE 's#^[[:space:]]*(k8s\.io/[^[:space:]]+)[[:space:]]+=>[[:space:]]+\./staging/src/.*#\1#p' "$gomod" \
             | sort -u | sed "s#.*#replace & => & $KUBE_STAGING_VERSION#")
  [ -n "$replaces" ] || { log "no staging replace lines found in $gomod"; exit 1; }
  wrapper_module "$work" "require k8s.io/kubernetes $KUBE_VERSION" "$replaces"
  local minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
  cmds=("${cmds[@]/#/k8s.io/kubernetes/cmd/}")
  local ldflags="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  (
    cd "$work"
    # Resolve the full module graph against k8s.io/kubernetes's own requirements.
    # Getting the command packages (not just the module) records every go.sum entry they need.
    go get "${cmds[@]/%/@$KUBE_VERSION}" >/dev/null
    mkdir -p "$out"
    go build -ldflags "$ldflags" -o "$out/" "${cmds[@]}"
  )
  touch "$out/.ok"
}

build_etcd() {
  local out="$cache/bin/etcd-$ETCD_VERSION"
  [ -f "$out/.ok" ] && return 0
  log "building etcd $ETCD_VERSION"
  local work="$cache/work/etcd-$ETCD_VERSION"
  # etcd's server module replaces its siblings with relative paths; requiring each
  # published sibling at the same version gives the same build outside its repo.
  wrapper_module "$work" "require (" \
    "	go.etcd.io/etcd/server/v3 $ETCD_VERSION" \
    "	go.etcd.io/etcd/api/v3 $ETCD_VERSION" \
    "	go.etcd.io/etcd/client/pkg/v3 $ETCD_VERSION" \
    "	go.etcd.io/etcd/client/v3 $ETCD_VERSION" \
    "	go.etcd.io/etcd/pkg/v3 $ETCD_VERSION" \
    ")"
  (
    cd "$work"
    go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null  # the module root is package main
    mkdir -p "$out"
    go build -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3
  )
  touch "$out/.ok"
}

build_kwok() {
  local out="$cache/bin/kwok-$KWOK_VERSION"
  [ -f "$out/.ok" ] && return 0
  log "building kwok and kwokctl $KWOK_VERSION"
  local work="$cache/work/kwok-$KWOK_VERSION"
  wrapper_module "$work" "require sigs.k8s.io/kwok $KWOK_VERSION"
  local kube=${KUBE_VERSION#v}
  (
    cd "$work"
    go get "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION" >/dev/null
    mkdir -p "$out"
    go build -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v} -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=$kube" \
      -o "$out/" sigs.k8s.io/kwok/cmd/kwok sigs.k8s.io/kwok/cmd/kwokctl
  )
  touch "$out/.ok"
}

build_promtool() {
  local out="$cache/bin/promtool-$PROMETHEUS_VERSION"
  [ -f "$out/.ok" ] && return 0
  log "building promtool $PROMETHEUS_VERSION"
  local work="$cache/work/promtool-$PROMETHEUS_VERSION"
  local release=${PROMETHEUS_VERSION#v0.}
  release="3.$((10#${release%%.*} - 300)).${PROMETHEUS_VERSION##*.}"
  wrapper_module "$work" "require github.com/prometheus/prometheus $PROMETHEUS_VERSION"
  (
    cd "$work"
    go get "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION" >/dev/null
    mkdir -p "$out"
    go build -ldflags "-s -w -X github.com/prometheus/common/version.Version=$release" \
      -o "$out/promtool" github.com/prometheus/prometheus/cmd/promtool
  )
  touch "$out/.ok"
}

# The real nodes' images (Debian rootfs with python3, pause), cached by content; root only.
build_images() {
  if [ "$(id -u)" -eq 0 ]; then python3 "$here/images.py" >/dev/null; fi
}

components=("$@")
[ ${#components[@]} -gt 0 ] || components=(etcd kwok kube images promtool)
mkdir -p "$cache"
for name in "${components[@]}"; do
  case $name in
    # One build of a component at a time per cache: two checkouts starting labs at once (make test
    # beside make bench) would otherwise build into the same work folder; the second waits for that
    # component only, then finds its .ok mark. A lab that needs no promtool never waits for one.
    etcd|kwok|kube|images|promtool) ( flock 9; "build_$name" ) 9>"$cache/build-$name.lock" ;;
    *) echo "unknown component $name: expected etcd, kwok, kube, images or promtool" >&2; exit 2 ;;
  esac
done
echo "$cache/bin"
