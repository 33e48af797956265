#!/usr/bin/env bash
# Installs the Debian packages built by scripts/package, checks the files
# and modes they install and their systemd units, then runs each installed
# binary with the command line its unit gives, as the unit's user, in the
# state directories systemd would create (CI has no systemd): the server
# comes up, an agent onboards to it, checks in and reports a policy.
# Everything it installs or creates is removed at the end. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "FAILED: package-test needs root (dpkg -i)" >&2; exit 1; }

out="${CARGO_TARGET_DIR:-target}/debian"
server_deb=$(ls -t "$out"/rampart-server_*.deb | head -1)
agent_deb=$(ls -t "$out"/rampart-agent_*.deb | head -1)
work=$(mktemp -d)
pids=()

fail() { echo "FAILED: $*" >&2; exit 1; }

cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  dpkg --purge rampart-agent rampart-server >/dev/null 2>&1 || true
  rm -rf /var/lib/rampart /var/lib/rampart-keys /var/lib/rampart-agent /etc/rampart "$work"
  if getent passwd rampart >/dev/null; then userdel rampart 2>/dev/null || true; fi
  if getent group rampart >/dev/null; then groupdel rampart 2>/dev/null || true; fi
}
trap cleanup EXIT

echo "-- install $(basename "$server_deb") $(basename "$agent_deb")"
dpkg -i "$server_deb" "$agent_deb" >/dev/null

expect_mode() { # PATH MODE OWNER:GROUP
  local got
  got=$(stat -c '%a %U:%G' "$1") || fail "$1 is missing"
  [ "$got" = "$2 $3" ] || fail "$1 is $got, expected $2 $3"
  echo "ok   $1 $got"
}
units=/usr/lib/systemd/system
expect_mode /usr/bin/rampart-server 755 root:root
expect_mode /usr/bin/rampart 755 root:root
expect_mode /usr/bin/rampart-agent 755 root:root
expect_mode "$units/rampart-server.service" 644 root:root
expect_mode "$units/rampart-agent.service" 644 root:root
expect_mode /etc/rampart/server.env 640 root:rampart
expect_mode /etc/rampart/agent.toml 644 root:root
getent passwd rampart | grep -q ':/usr/sbin/nologin$' || fail "the rampart user must have no login shell"
[ "$(id -u rampart)" -lt 1000 ] || fail "rampart must be a system user"
dpkg-query -W -f='${Conffiles}\n' rampart-server | grep -q /etc/rampart/server.env || fail "server.env is not a conffile"
dpkg-query -W -f='${Conffiles}\n' rampart-agent | grep -q /etc/rampart/agent.toml || fail "agent.toml is not a conffile"

unit_value() { sed -n "s/^$2=//p" "$units/$1" | tail -1; }
for option in NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes User=rampart UMask=0077 StateDirectoryMode=0700; do
  [ "$(unit_value rampart-server.service "${option%%=*}")" = "${option#*=}" ] || fail "rampart-server.service lacks $option"
done
[ -z "$(unit_value rampart-agent.service User)" ] || fail "the agent runs as root: it changes the firewall"
[ "$(unit_value rampart-agent.service Restart)" = always ] || fail "the agent must restart when it stops"

if command -v systemd-analyze >/dev/null; then
  echo "-- systemd-analyze verify"
  systemd-analyze verify --man=no "$units/rampart-server.service" "$units/rampart-agent.service" 2>&1 | tee "$work/verify.log"
  ! grep -q "rampart" "$work/verify.log" || fail "systemd-analyze verify found problems in the units"
else
  echo "SKIPPED: systemd-analyze verify (systemd-analyze is not installed)"
fi

# What systemd would do: create the state directories for the unit's user,
# read the environment file, apply the umask, run ExecStart as the user.
state_dirs() { for d in $(unit_value "$1" StateDirectory); do install -d -m "$(unit_value "$1" StateDirectoryMode)" -o "$2" -g "$2" "/var/lib/$d"; done; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
admin_port=$(free_port)
device_port=$(free_port)
# The configuration an administrator writes; the test's ports are free ones.
cat >> /etc/rampart/server.env <<CONF
RAMPART_LISTEN=127.0.0.1:$admin_port
RAMPART_DEVICE_LISTEN=127.0.0.1:$device_port
CONF

echo "-- start rampart-server as its unit does"
state_dirs rampart-server.service rampart
server_cmd=$(unit_value rampart-server.service ExecStart)
(
  set -a; . /etc/rampart/server.env; set +a
  umask 0077
  # shellcheck disable=SC2086 # the unit's ExecStart, split as systemd splits it
  exec setpriv --reuid=rampart --regid=rampart --init-groups -- $server_cmd
) >"$work/server.log" 2>&1 &
pids+=($!)
api="http://127.0.0.1:$admin_port"
for _ in $(seq 1 60); do
  curl -fsS "$api/readyz" >/dev/null 2>&1 && break
  sleep 1
done
curl -fsS "$api/readyz" >/dev/null || { cat "$work/server.log"; fail "the installed server did not become ready"; }
echo "ok   rampart-server ready on $api"
expect_mode /var/lib/rampart 700 rampart:rampart
expect_mode /var/lib/rampart/rampart.db 600 rampart:rampart
expect_mode /var/lib/rampart/admin-token 600 rampart:rampart
expect_mode /var/lib/rampart-keys/master-key 600 rampart:rampart

export RAMPART_SERVER="$api" RAMPART_TOKEN
RAMPART_TOKEN=$(cat /var/lib/rampart/admin-token)
rampart onboarding create --out "$work/package.json" >/dev/null
mkdir -p "$work/fleet"
cat > "$work/fleet/policy.yaml" <<'POLICY'
kind: Policy
name: packaged-av
family: antivirus
platform: linux
settings:
  real_time_protection: true
assignments:
  include: [all-devices]
POLICY
rampart apply -f "$work/fleet" >/dev/null

echo "-- onboard and start rampart-agent as its unit does"
state_dirs rampart-agent.service root
agent_cmd=$(unit_value rampart-agent.service ExecStart)
agent_state=$(echo "$agent_cmd" | sed -n 's/.*--state-dir \([^ ]*\).*/\1/p')
rampart-agent onboard --package "$work/package.json" --device-name packaged-01 \
  --state-dir "$agent_state" --config /etc/rampart/agent.toml
(
  umask 0077
  # shellcheck disable=SC2086
  exec $agent_cmd
) >"$work/agent.log" 2>&1 &
pids+=($!)
# The packaged configuration enables only the file provider: its values are
# recorded, not enforced, and the report says which backend applied them.
reported() {
  local report
  report=$(rampart report device packaged-01 -o json 2>/dev/null) || return 1
  echo "$report" | grep -q '"status": "recorded"' && echo "$report" | grep -q '"backend": "file"'
}
for _ in $(seq 1 60); do
  reported && break
  sleep 1
done
reported || {
  cat "$work/agent.log"; rampart report device packaged-01 || true; fail "the packaged agent did not report the policy"
}
expect_mode "$agent_state" 700 root:root
echo "ok   packaged-01 onboarded, checked in and reported the policy"
echo "package-test: passed"
