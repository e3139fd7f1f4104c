#!/usr/bin/env bash
# Local stand-ins for the images docker-compose.yml pulls, for a Docker engine that cannot reach a
# registry (the project's machines: Debian's apt mirror and the npm registry only). Built from Debian
# packages and tagged with the names the compose file uses, so the real docker-compose.yml runs
# unchanged (plus docker-compose.cpu.yml on a host without an NVIDIA GPU); `npm run soak --
# compose-redis` runs against them. On a host that can pull, do not run this: pull the real images.
#
#   redis:7-bookworm         Debian bookworm's redis-server (7.0.x), protected mode off and /data as
#                            the working folder, as the official image has them
#   pgvector/pgvector:pg16   Debian trixie's PostgreSQL 17 + pgvector 0.8 (bookworm packages no
#                            pgvector; no PostgreSQL 16 with it is reachable): the server the app
#                            talks to is one major version newer than the real image's. The entrypoint
#                            honours POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB on first start as
#                            the official one does (scram-sha-256 for network connections)
#   node:20-bookworm-slim    bookworm minbase with this host's Node 20 binary and npm, user `node`
#                            (uid 1000) as in the official image, and the host's CA bundle
#                            (CA_BUNDLE, default /etc/ssl/certs/ca-certificates.crt) for npm
#   vqclip:cpu               the repository's Dockerfile on that base (npm ci through the host's
#                            network: --network host, the engine here gives containers no route out)
#
# Usage: tools/compose-standin-images.sh [--rebuild] [--no-app]
#   --rebuild  build every image again (default: keep the ones that exist)
#   --no-app   only the three base images, not vqclip:cpu
# Environment: DEBIAN_MIRROR (default: the first URI of /etc/apt/sources.list*), STANDIN_WORK (a
# scratch folder for the root file systems, default /var/tmp/vqclip-standin). Needs root (debootstrap),
# debootstrap and a Docker engine. The engine's vfs storage driver copies every layer, so the images
# are kept to few layers and apt lists are dropped.
set -euo pipefail

rebuild=false
app=true
for arg in "$@"; do
  case "$arg" in
    --rebuild) rebuild=true ;;
    --no-app) app=false ;;
    *) echo "unknown argument $arg (known: --rebuild, --no-app)" >&2; exit 2 ;;
  esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
work=${STANDIN_WORK:-/var/tmp/vqclip-standin}
mirror=${DEBIAN_MIRROR:-$(grep -hoE '^(URIs:|deb) +(\[[^]]*\] +)?https?://[^ ]+/debian/?( |$)' \
  /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null | grep -oE 'https?://[^ ]+' | head -1 || true)}
mirror=${mirror:-http://deb.debian.org/debian}
mirror=${mirror%/}

docker info >/dev/null 2>&1 || { echo "no Docker engine reachable (docker info failed)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install -y debootstrap" >&2; exit 1; }
mkdir -p "$work"

have() { [ "$rebuild" = false ] && docker image inspect "$1" >/dev/null 2>&1; }

# A minbase root file system of one Debian suite, imported as one layer.
base() {
  local suite=$1 tag=local/debian:$1-minbase
  if have "$tag"; then echo "have $tag"; return; fi
  local dir=$work/rootfs-$suite
  rm -rf "$dir"
  echo "debootstrap $suite from $mirror"
  debootstrap --variant=minbase "$suite" "$dir" "$mirror" >"$work/debootstrap-$suite.log"
  local security=${mirror%/debian}/debian-security
  cat >"$dir/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security $suite-security main
EOF
  # Smaller: no apt lists, caches, docs or man pages in the layer.
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb \
    "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/info/*
  tar -C "$dir" -c . | docker import -c 'CMD ["bash"]' -c 'ENV LANG=C.UTF-8' - "$tag" >/dev/null
  rm -rf "$dir"
  echo "built $tag"
}

# docker build of a context folder, through the host's network (apt and npm).
build() {
  local tag=$1 context=$2
  shift 2
  if have "$tag"; then echo "have $tag"; return; fi
  echo "building $tag"
  DOCKER_BUILDKIT=0 docker build -q --network host --force-rm -t "$tag" "$@" "$context" >/dev/null
  echo "built $tag"
}

base bookworm
base trixie

# --- redis:7-bookworm ------------------------------------------------------------------------------
ctx=$work/ctx-redis
rm -rf "$ctx" && mkdir -p "$ctx"
cat >"$ctx/entrypoint.sh" <<'EOF'
#!/bin/sh
# The official image builds Redis with protected mode off (compose connects over the network without
# a password); Debian's binary has it on, so it is turned off here, after a config file if one is given.
set -e
if [ "$1" = redis-server ]; then
  shift
  case "$1" in
    ""|-*) set -- redis-server --protected-mode no "$@" ;;
    *) conf=$1; shift; set -- redis-server "$conf" --protected-mode no "$@" ;;
  esac
fi
exec "$@"
EOF
cat >"$ctx/Dockerfile" <<'EOF'
FROM local/debian:bookworm-minbase
RUN set -eux; apt-get update; apt-get install -y --no-install-recommends redis-server; \
    rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/*; \
    mkdir -p /data; chown redis:redis /data
COPY entrypoint.sh /usr/local/bin/docker-entrypoint.sh
WORKDIR /data
USER redis
EXPOSE 6379
ENTRYPOINT ["/bin/sh", "/usr/local/bin/docker-entrypoint.sh"]
CMD ["redis-server"]
EOF
build redis:7-bookworm "$ctx"

# --- pgvector/pgvector:pg16 (PostgreSQL 17 + pgvector from trixie) ---------------------------------
ctx=$work/ctx-postgres
rm -rf "$ctx" && mkdir -p "$ctx"
cat >"$ctx/entrypoint.sh" <<'EOF'
#!/bin/sh
# First start on an empty PGDATA: initdb with POSTGRES_USER as the superuser and POSTGRES_PASSWORD as
# its password, POSTGRES_DB created, network connections by password (scram-sha-256), as the
# official image's entrypoint does. Then the server in the foreground.
set -eu
: "${POSTGRES_USER:=postgres}" "${POSTGRES_DB:=$POSTGRES_USER}"
if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "POSTGRES_PASSWORD is not set: the database would accept any network connection" >&2
    exit 1
  fi
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb -D "$PGDATA" --username="$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust \
    --auth-host=scram-sha-256 --encoding=UTF8 >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  if [ "$POSTGRES_DB" != postgres ]; then
    echo "CREATE DATABASE \"$POSTGRES_DB\";" | postgres --single -D "$PGDATA" -j postgres >/dev/null
  fi
  echo "initialised $PGDATA (user $POSTGRES_USER, database $POSTGRES_DB)"
fi
exec "$@"
EOF
cat >"$ctx/Dockerfile" <<'EOF'
FROM local/debian:trixie-minbase
RUN set -eux; apt-get update; \
    apt-get install -y --no-install-recommends postgresql-17 postgresql-17-pgvector; \
    rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/*; \
    mkdir -p /var/lib/postgresql/data /var/run/postgresql; \
    chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql; chmod 700 /var/lib/postgresql/data
COPY entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV PATH=/usr/lib/postgresql/17/bin:$PATH PGDATA=/var/lib/postgresql/data
USER postgres
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["/bin/sh", "/usr/local/bin/docker-entrypoint.sh"]
CMD ["postgres"]
EOF
build pgvector/pgvector:pg16 "$ctx"

# --- node:20-bookworm-slim (this host's Node 20) ---------------------------------------------------
node_bin=$(command -v node)
case "$("$node_bin" --version)" in
  v20.*) ;;
  *) echo "the host's node is $("$node_bin" --version), not 20: the stand-in needs a Node 20 binary" >&2; exit 1 ;;
esac
npm_dir=$(cd "$(dirname "$(readlink -f "$(command -v npm)")")/.." && pwd)
ctx=$work/ctx-node
rm -rf "$ctx" && mkdir -p "$ctx"
cp "$node_bin" "$ctx/node"
cp -r "$npm_dir" "$ctx/npm"
# The host's CA bundle: where the npm registry is reached through a proxy with its own CA (as here),
# `npm ci` in the Dockerfile must trust it too. A stand-in only: the official image has Debian's.
cp "${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}" "$ctx/ca-certificates.crt"
cat >"$ctx/Dockerfile" <<'EOF'
FROM local/debian:bookworm-minbase
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
RUN set -eux; \
    ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm; \
    ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx; \
    groupadd --gid 1000 node; useradd --uid 1000 --gid node --shell /bin/bash --create-home node; \
    node --version; npm --version
CMD ["node"]
EOF
build node:20-bookworm-slim "$ctx"
rm -rf "$ctx"

# --- vqclip:cpu: the repository's own Dockerfile ---------------------------------------------------
if [ "$app" = true ]; then
  build vqclip:cpu "$root" --build-arg ONNXRUNTIME_NODE_INSTALL=skip
fi

docker image prune -f >/dev/null
docker images --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' |
  grep -E '^(local/debian|redis|pgvector/pgvector|node|vqclip):' || true
