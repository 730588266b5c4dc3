#!/usr/bin/env bash
# Make sure the services the test suite runs against are up on this machine:
# PostgreSQL 15 + PostGIS (127.0.0.1:5432), Mosquitto (1883), Redis (6379),
# NATS with JetStream (4222), and Debian's chromium for the browser tests.
#
# Idempotent: a service that is already up is left alone (never restarted); one that
# is missing is installed with apt-get (Debian) and started. One line per step; exits
# non-zero with the reason when a service cannot be made available.
# Run by `make test` before pytest. Log of apt and start-up output: $LOG.
set -uo pipefail

LOG="${CITYOS_SERVICES_LOG:-/tmp/cityos-ensure-services.log}"
PG_VERSION="${CITYOS_PG_VERSION:-15}"
: >>"$LOG"

if [ "$(id -u)" -eq 0 ]; then
    AS_ROOT=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    AS_ROOT=(sudo -n)
else
    AS_ROOT=()  # not root and no sudo: starting what we can, installing will fail clearly
fi

fail() {
    echo "ensure-services: $*" >&2
    echo "ensure-services: details in $LOG" >&2
    exit 1
}

as_root() { "${AS_ROOT[@]}" "$@"; }

port_open() {  # port_open PORT: true when something accepts TCP on 127.0.0.1:PORT
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

wait_for() {  # wait_for SECONDS COMMAND...: poll COMMAND until it succeeds
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        [ "$SECONDS" -ge "$deadline" ] && return 1
        sleep 0.5
    done
}

apt_install() {  # apt_install PACKAGE...: wait for the dpkg lock, refresh lists if needed
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=600)
    command -v apt-get >/dev/null 2>&1 || return 1
    echo "--- apt-get install $*" >>"$LOG"
    as_root "${apt[@]}" install "$@" >>"$LOG" 2>&1 && return 0
    as_root "${apt[@]}" update >>"$LOG" 2>&1 && as_root "${apt[@]}" install "$@" >>"$LOG" 2>&1
}

# ------------------------------------------------------------------ PostgreSQL
pg_ready() { pg_isready -q -h 127.0.0.1 -p 5432 >/dev/null 2>&1; }

installed_postgres=no
if pg_ready; then
    echo "postgresql: running on 127.0.0.1:5432"
else
    if [ ! -x "/usr/lib/postgresql/$PG_VERSION/bin/postgres" ]; then
        apt_install "postgresql-$PG_VERSION" || fail "postgresql: cannot install postgresql-$PG_VERSION"
        installed_postgres=yes
    fi
    cluster_version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)"
    [ -n "$cluster_version" ] || fail "postgresql: no cluster under /etc/postgresql"
    if [ "$installed_postgres" = yes ]; then
        # a fresh cluster: let the local test user in without a password, as CI expects
        hba="/etc/postgresql/$cluster_version/main/pg_hba.conf"
        as_root sed -i -e '1i host all postgres 127.0.0.1/32 trust' \
            -e '1i host all postgres ::1/128 trust' "$hba"
    fi
    as_root pg_ctlcluster --skip-systemctl-redirect "$cluster_version" main start >>"$LOG" 2>&1
    wait_for 30 pg_ready || fail "postgresql: cluster $cluster_version/main did not start"
    echo "postgresql: started cluster $cluster_version/main on 127.0.0.1:5432"
fi

# ------------------------------------------------------------------ PostGIS
cluster_version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)"
cluster_version="${cluster_version:-$PG_VERSION}"
postgis_control="/usr/share/postgresql/$cluster_version/extension/postgis.control"
if [ -f "$postgis_control" ]; then
    echo "postgis: installed for PostgreSQL $cluster_version"
else
    apt_install "postgresql-$cluster_version-postgis-3" \
        || fail "postgis: cannot install postgresql-$cluster_version-postgis-3"
    [ -f "$postgis_control" ] || fail "postgis: installed, but $postgis_control is missing"
    echo "postgis: installed postgresql-$cluster_version-postgis-3"
fi

# ------------------------------------------------------------------ Mosquitto
if port_open 1883; then
    echo "mosquitto: running on 127.0.0.1:1883"
else
    if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
        apt_install mosquitto || fail "mosquitto: cannot install mosquitto"
    fi
    as_root mkdir -p /run/mosquitto /var/lib/mosquitto /var/log/mosquitto
    id mosquitto >/dev/null 2>&1 \
        && as_root chown mosquitto /run/mosquitto /var/lib/mosquitto /var/log/mosquitto
    as_root "$(command -v mosquitto || echo /usr/sbin/mosquitto)" -d \
        -c /etc/mosquitto/mosquitto.conf >>"$LOG" 2>&1
    wait_for 15 port_open 1883 || fail "mosquitto: did not start listening on 127.0.0.1:1883"
    echo "mosquitto: started on 127.0.0.1:1883"
fi

# ------------------------------------------------------------------ Redis
if port_open 6379; then
    echo "redis: running on 127.0.0.1:6379"
else
    command -v redis-server >/dev/null 2>&1 || apt_install redis-server \
        || fail "redis: cannot install redis-server"
    as_root mkdir -p /var/lib/redis /var/log/redis
    as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
        --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log >>"$LOG" 2>&1
    wait_for 15 port_open 6379 || fail "redis: did not start listening on 127.0.0.1:6379"
    echo "redis: started on 127.0.0.1:6379"
fi

# ------------------------------------------------------------------ NATS (JetStream)
if port_open 4222; then
    echo "nats: running on 127.0.0.1:4222"
else
    [ -x /usr/sbin/nats-server ] || apt_install nats-server \
        || fail "nats: cannot install nats-server"
    as_root mkdir -p /var/lib/nats-server
    as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
        -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log \
        >>"$LOG" 2>&1
    wait_for 15 port_open 4222 || fail "nats: did not start listening on 127.0.0.1:4222"
    echo "nats: started on 127.0.0.1:4222 (JetStream)"
fi

# ------------------------------------------------------------------ chromium
if command -v chromium >/dev/null 2>&1; then
    echo "chromium: installed ($(command -v chromium))"
else
    apt_install chromium || fail "chromium: cannot install Debian's chromium"
    command -v chromium >/dev/null 2>&1 || fail "chromium: installed, but not on PATH"
    echo "chromium: installed"
fi

# ------------------------------------------------------------------ faketime
# .ci/clock-matrix runs the clock-sensitive tests under libfaketime and compiles
# its small clock_nanosleep wrapper (.ci/monotonic-sleep.c) with cc
if command -v faketime >/dev/null 2>&1; then
    echo "faketime: installed"
else
    apt_install faketime || fail "faketime: cannot install Debian's faketime"
    echo "faketime: installed"
fi
if command -v cc >/dev/null 2>&1; then
    echo "cc: installed"
else
    apt_install gcc libc6-dev || fail "cc: cannot install Debian's gcc"
    echo "cc: installed"
fi
