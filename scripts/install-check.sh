#!/usr/bin/env bash
# Installs a byocd .deb on this Debian machine for real (`apt-get install ./byocd_….deb`), checks
# that it gives what docs/operations.md ("Install") says — the binary, the unit enabled but not
# started, the configuration and its modes, the token key, the byocd user and its state
# directory — then removes and purges it and checks what stays (the database directory and the
# user, as documented), and finally removes those too, leaving the machine as it found it.
#
#   bash scripts/install-check.sh target/debian/byocd_0.1.0-1_amd64.deb
#
# It changes the machine while it runs: it needs root, refuses when a byocd package, a byocd
# user or /var/lib/byocd is already there, and is meant for throwaway machines (CI runs it).
set -euo pipefail

deb=$(realpath "$1")
fail() {
    echo "install-check: $*" >&2
    exit 1
}
[ "$(id -u)" = 0 ] || fail "needs root (it installs the package)"
if dpkg -s byocd >/dev/null 2>&1 || getent passwd byocd >/dev/null || [ -e /var/lib/byocd ]; then
    fail "byocd is already installed here (package, user or /var/lib/byocd): not touching it"
fi
installed=0
cleanup() {
    if [ "$installed" = 1 ]; then
        dpkg --purge byocd >/dev/null 2>&1 || true
    fi
    rm -rf /var/lib/byocd
    if getent passwd byocd >/dev/null; then deluser --quiet --system byocd >/dev/null 2>&1 || true; fi
    if getent group byocd >/dev/null; then delgroup --quiet --system byocd >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

# `mode user:group path` as stat prints it.
is() {
    local got
    got=$(stat -c '%a %U:%G' "$3" 2>/dev/null) || fail "$3 is missing"
    [ "$got" = "$1 $2" ] || fail "$3 is $got, not $1 $2"
}

export DEBIAN_FRONTEND=noninteractive
installed=1
apt-get install -y -qq --no-install-recommends "$deb" >/dev/null 2>&1 ||
    dpkg -i "$deb" >&2 || fail "the package did not install"
dpkg -s byocd | grep -qx 'Status: install ok installed' || fail "dpkg does not list byocd as installed"

/usr/bin/byocd --version | grep -q '^byocd ' || fail "/usr/bin/byocd does not run"
unit=
for candidate in /lib/systemd/system/byocd.service /usr/lib/systemd/system/byocd.service; do
    [ -f "$candidate" ] && unit=$candidate
done
[ -n "$unit" ] || fail "no byocd.service installed"
[ -L /etc/systemd/system/multi-user.target.wants/byocd.service ] ||
    fail "the unit is not enabled (no multi-user.target.wants link)"
is 640 root:byocd /etc/byocd/byocd.toml
is 750 root:byocd /etc/byocd/channels.d
is 700 root:root /etc/byocd/secrets
is 600 root:root /etc/byocd/secrets/token.key
is 750 byocd:byocd /var/lib/byocd
[ -z "$(ls -A /etc/byocd/channels.d)" ] || fail "/etc/byocd/channels.d is not empty"
user=$(getent passwd byocd) || fail "no byocd user"
IFS=: read -r _ _ uid _ _ home shell <<<"$user"
[ "$uid" -lt 1000 ] || fail "byocd is not a system user (uid $uid)"
[ "$home" = /var/lib/byocd ] || fail "byocd's home is $home"
[ "$shell" = /usr/sbin/nologin ] || fail "byocd's shell is $shell"
[ -f /usr/share/doc/byocd/operations.md ] || fail "no docs in /usr/share/doc/byocd"
[ -f /usr/share/doc/byocd/monitoring/byocd-alerts.yml ] || fail "no alert rules in /usr/share/doc/byocd"
# Not started: no daemon runs as byocd.
if pgrep -u byocd >/dev/null 2>&1; then fail "something runs as byocd after the install"; fi
key=$(sha256sum /etc/byocd/secrets/token.key)

# Installing again (an upgrade in place) keeps the key and the operator's edits.
echo '# edited by the operator' >>/etc/byocd/byocd.toml
dpkg -i --force-confold "$deb" >/dev/null 2>&1 || fail "reinstalling the package failed"
[ "$(sha256sum /etc/byocd/secrets/token.key)" = "$key" ] || fail "a reinstall replaced the token key"
grep -qx '# edited by the operator' /etc/byocd/byocd.toml || fail "a reinstall overwrote byocd.toml"

# Remove, then purge: the unit is masked, then unmasked and disabled; the key goes; the data and
# the user stay.
dpkg --remove byocd >/dev/null 2>&1 || fail "dpkg --remove failed"
[ ! -e /usr/bin/byocd ] || fail "/usr/bin/byocd stayed after remove"
# Debian's systemd helper masks a removed package's unit (its configuration stays until purge).
[ "$(readlink /etc/systemd/system/byocd.service)" = /dev/null ] || fail "the unit is not masked after remove"
dpkg --purge byocd >/dev/null 2>&1 || fail "dpkg --purge failed"
installed=0
[ ! -e /etc/byocd/secrets/token.key ] || fail "the token key stayed after purge"
[ ! -e /etc/byocd/byocd.toml ] || fail "byocd.toml stayed after purge"
[ ! -L /etc/systemd/system/byocd.service ] || fail "the unit stayed masked after purge"
[ ! -L /etc/systemd/system/multi-user.target.wants/byocd.service ] || fail "the unit stayed enabled after purge"
[ -d /var/lib/byocd ] || fail "purge removed /var/lib/byocd (the database must stay)"
getent passwd byocd >/dev/null || fail "purge removed the byocd user (it must stay)"
echo "install-check: $deb installs, reinstalls, removes and purges as docs/operations.md describes" >&2
