#!/usr/bin/env bash
# Makes this machine build and run hwa's container images the way a Docker user does, with Debian's podman
# and docker-compose instead of a Docker engine, and without an image registry:
#
#   bash scripts/containers-local.sh up      # install, configure, start the Docker-API socket, make base images
#   bash scripts/containers-local.sh down    # stop the socket service
#
# 1. apt: podman, runc, debootstrap, docker-compose (v1.29; it talks to podman's Docker-compatible API).
# 2. /etc/containers/containers.conf: the runc runtime and cgroupfs (crun refuses a machine with hybrid
#    cgroups, as the reference machine has), and open-file/process limits such a virtual machine allows.
# 3. `podman system service` on /run/podman/podman.sock; export DOCKER_HOST=unix:///run/podman/podman.sock.
# 4. Stand-ins for the base images the Dockerfiles name, since no registry can be reached: a minimal Debian
#    bookworm (debootstrap) with this machine's Node 20 (binary, npm and headers where the official node
#    image keeps them) and its CA bundle (npm inside a build goes through this network's TLS proxy), tagged as
#    node:20-bookworm, node:20-bookworm-slim and the CUDA image of docker/Dockerfile.gpu. The Dockerfiles
#    themselves are used unchanged.
# Idempotent: each step is skipped when already done. Prints one line per step.
set -euo pipefail
SOCKET=/run/podman/podman.sock
ROOTFS=/var/tmp/hwa-base-rootfs
NODE_MAJOR=$(node -p 'process.versions.node.split(".")[0]')
CUDA_IMAGE=$(sed -n 's/^ARG CUDA_IMAGE=//p' "$(dirname "$0")/../docker/Dockerfile.gpu")
TAGS=("docker.io/library/node:${NODE_MAJOR}-bookworm" "docker.io/library/node:${NODE_MAJOR}-bookworm-slim" "docker.io/${CUDA_IMAGE}")

say() { printf 'containers-local: %s\n' "$*"; }

install() {
  if command -v podman >/dev/null && command -v docker-compose >/dev/null && command -v debootstrap >/dev/null && command -v runc >/dev/null; then
    say "packages present"; return
  fi
  say "installing podman, runc, debootstrap, docker-compose"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
}

configure() {
  local conf=/etc/containers/containers.conf
  if grep -qs 'hwa: containers-local' "$conf"; then say "containers.conf configured"; return; fi
  say "writing $conf (runc, cgroupfs, ulimits)"
  cat >>"$conf" <<'EOF'
# hwa: containers-local.sh
[containers]
default_ulimits = ["nofile=16384:16384", "nproc=16384:16384"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
EOF
}

service() {
  # conmon starts in the service's working directory: a service whose directory was deleted (a removed clone it
  # was started from) still answers pings but cannot start a container, so it is started again.
  local pid
  pid=$(cat /run/podman/hwa-service.pid 2>/dev/null || true)
  if [ -n "$pid" ] && [[ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" == *" (deleted)" ]]; then
    say "restarting the podman service: its working directory was deleted"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    rm -f "$SOCKET" /run/podman/hwa-service.pid
  fi
  if [ -S "$SOCKET" ] && curl -fsS --unix-socket "$SOCKET" http://d/_ping >/dev/null 2>&1; then say "podman service running on $SOCKET"; return; fi
  mkdir -p "$(dirname "$SOCKET")"
  say "starting podman system service on $SOCKET"
  (cd / && exec nohup podman system service --time=0 "unix://$SOCKET" >/var/tmp/hwa-podman-service.log 2>&1) &
  echo $! >/run/podman/hwa-service.pid
  for _ in $(seq 50); do curl -fsS --unix-socket "$SOCKET" http://d/_ping >/dev/null 2>&1 && return; sleep 0.2; done
  say "podman service did not answer on $SOCKET (log: /var/tmp/hwa-podman-service.log)"; exit 1
}

base() {
  local missing=0
  for tag in "${TAGS[@]}"; do podman image exists "$tag" || missing=1; done
  if [ "$missing" = 0 ]; then say "base images present"; return; fi
  if [ ! -x "$ROOTFS/bin/sh" ]; then
    say "debootstrap --variant=minbase bookworm (about 30 s)"
    rm -rf "$ROOTFS"
    debootstrap --variant=minbase bookworm "$ROOTFS" >/var/tmp/hwa-debootstrap.log 2>&1
  fi
  local node npm headers
  node=$(command -v node); npm=$(dirname "$(readlink -f "$(command -v npm)")")/..; headers=$(dirname "$node")/../include/node
  mkdir -p "$ROOTFS/usr/local/bin" "$ROOTFS/usr/local/lib/node_modules" "$ROOTFS/usr/local/include" "$ROOTFS/usr/local/share/ca-certificates"
  cp "$node" "$ROOTFS/usr/local/bin/node"
  rm -rf "$ROOTFS/usr/local/lib/node_modules/npm" && cp -r "$(readlink -f "$npm")" "$ROOTFS/usr/local/lib/node_modules/npm"
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$ROOTFS/usr/local/bin/npm"
  [ -d "$headers" ] && rm -rf "$ROOTFS/usr/local/include/node" && cp -r "$headers" "$ROOTFS/usr/local/include/node"
  cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/usr/local/share/hwa-host-ca.crt"
  say "importing the stand-in base image as ${TAGS[*]}"
  tar -C "$ROOTFS" -c . | podman import \
    --change 'ENV NODE_EXTRA_CA_CERTS=/usr/local/share/hwa-host-ca.crt' \
    --change 'ENV PIP_CERT=/usr/local/share/hwa-host-ca.crt' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["node"]' - "${TAGS[0]}" >/dev/null 2>&1
  for tag in "${TAGS[@]:1}"; do podman tag "${TAGS[0]}" "$tag"; done
}

case "${1:-up}" in
  up) install; configure; service; base; say "ready: export DOCKER_HOST=unix://$SOCKET" ;;
  down)
    if [ -f /run/podman/hwa-service.pid ]; then kill "$(cat /run/podman/hwa-service.pid)" 2>/dev/null || true; rm -f /run/podman/hwa-service.pid; fi
    say "podman service stopped" ;;
  *) echo "usage: $0 up|down"; exit 2 ;;
esac
