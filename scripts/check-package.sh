#!/usr/bin/env bash
# Checks a byocd .deb as an operator would find it installed (docs/operations.md, "Install"):
# its control fields, its files and conffiles, its maintainer scripts (the user, the state
# directory, the unit enabled but not started), and that its binary is the production build.
# Runs lintian too when it is installed (errors fail, warnings are printed).
#
#   bash scripts/check-package.sh target/debian/byocd_0.1.0-1_amd64.deb
set -euo pipefail

deb=$1
fail() {
    echo "check-package: $*" >&2
    exit 1
}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# Control fields.
field() { dpkg-deb --field "$deb" "$1"; }
[ "$(field Package)" = byocd ] || fail "Package is not byocd"
field Depends | grep -q adduser || fail "Depends lacks adduser (postinst runs adduser): $(field Depends)"
field Depends | grep -q 'libc6' || fail "Depends lacks the shared libraries (\$auto): $(field Depends)"

# Files, as dpkg-deb --contents lists them.
contents=$(dpkg-deb --contents "$deb" | awk '{print $1, $NF}')
want() {
    echo "$contents" | grep -qE "^$1 \./$2\$" || fail "no $2 with mode $1 in the package:
$contents"
}
want '-rwxr-xr-x' 'usr/bin/byocd'
want '-rw-r-----' 'etc/byocd/byocd.toml'
want '-rw-r--r--' '(usr/)?lib/systemd/system/byocd\.service'
want '-rw-r--r--' 'usr/share/doc/byocd/operations\.md'
want '-rw-r--r--' 'usr/share/doc/byocd/monitoring/byocd-alerts\.yml'
want '-rw-r--r--' 'usr/share/doc/byocd/monitoring/byocd-dashboard\.json'
want '-rw-r--r--' 'usr/share/doc/byocd/examples/channels\.d/acme-whatsapp\.toml'
want '-rw-r--r--' 'usr/share/doc/byocd/copyright'
if echo "$contents" | grep -qE '\./etc/byocd/channels\.d/.+\.toml$'; then
    fail "a channel file in /etc/byocd/channels.d would start the service before it is configured"
fi
if echo "$contents" | grep -qE 'byocd-bench'; then
    fail "the benchmark binary is in the package"
fi

# Control files: conffiles and maintainer scripts.
dpkg-deb --control "$deb" "$scratch/control"
grep -qx /etc/byocd/byocd.toml "$scratch/control/conffiles" ||
    fail "/etc/byocd/byocd.toml is not a conffile: $(cat "$scratch/control/conffiles" 2>/dev/null)"
for script in postinst postrm; do
    [ -x "$scratch/control/$script" ] || fail "no executable $script"
    sh -n "$scratch/control/$script" || fail "$script is not valid sh"
    grep -q '#DEBHELPER#' "$scratch/control/$script" && fail "$script still holds #DEBHELPER#"
done
postinst="$scratch/control/postinst"
grep -q 'adduser --system' "$postinst" || fail "postinst makes no system user"
grep -q 'install -d -m 0750 -o byocd -g byocd /var/lib/byocd' "$postinst" || fail "postinst makes no state directory"
grep -q 'byocd keygen --out /etc/byocd/secrets/token.key' "$postinst" || fail "postinst makes no token key"
grep -q 'deb-systemd-helper enable' "$postinst" || fail "postinst does not enable the unit"
if grep -q 'deb-systemd-invoke start' "$postinst"; then
    fail "postinst starts the service before it is configured"
fi

# The files themselves.
dpkg-deb --extract "$deb" "$scratch/root"
unit=
for candidate in "$scratch"/root/lib/systemd/system/byocd.service "$scratch"/root/usr/lib/systemd/system/byocd.service; do
    [ -f "$candidate" ] && unit=$candidate
done
[ -n "$unit" ] || fail "no byocd.service in the package"
grep -qx 'ExecStart=/usr/bin/byocd --config /etc/byocd/byocd.toml serve' "$unit" ||
    fail "the unit does not start /usr/bin/byocd"
grep -qx 'ConditionPathExistsGlob=/etc/byocd/channels.d/\*.toml' "$unit" ||
    fail "the unit starts without a channel configured"
bin="$scratch/root/usr/bin/byocd"
"$bin" --version | grep -q '^byocd ' || fail "the binary does not run"
if "$bin" demo >/dev/null 2>&1; then
    fail "the packaged binary runs the demo: it is not the production build"
fi
said=$("$bin" demo 2>&1 || true)
echo "$said" | grep -q 'without the .sandbox. feature' || fail "the packaged binary does not say it is the production build: $said"
"$bin" --config "$scratch/root/etc/byocd/byocd.toml" config check >/dev/null 2>&1 ||
    echo "check-package: note: the shipped byocd.toml names paths of the installed system; config check in the scratch root is informative only" >&2

if command -v lintian >/dev/null 2>&1; then
    lintian --fail-on error --suppress-tags no-manual-page "$deb"
else
    echo "check-package: lintian is not installed; skipped (Debian: apt-get install lintian)" >&2
fi
echo "check-package: $deb: control, files, conffiles, maintainer scripts and the production binary are as documented" >&2
