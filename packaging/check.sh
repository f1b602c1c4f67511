#!/usr/bin/env bash
# The appliance check (issue 6), too slow for `cargo test` (the static LTO build alone takes ~7 min
# on 2 cores from scratch), so `.ci/run` calls it after the tests:
#
#   1. packaging/build.sh: the static release binary (`file`/`ldd`: no dynamic dependencies);
#   2. `cargo deb`: the .deb, and what `dpkg-deb --info/--contents` show (files, conffiles,
#      maintainer scripts, and the static binary inside);
#   3. name resolution in the static binary: `serve` dials a provider named `localhost`
#      (resolved through /etc/hosts) and the dial arrives; every syscall that run and
#      `check-config` made (strace) is allowed by the unit's SystemCallFilter=;
#   4. `dpkg -i` here: the system user, the data directory, config permissions, the service NOT
#      started; the installed binary's `check-config` (exit 2 naming `tokens`, then exit 0 with
#      VALID_TOKENS and EXTERNAL_SERVICE_URL); `serve` as the callmgr user creates callmgr.redb
#      and stops cleanly on SIGTERM; a reinstall (the upgrade path) keeps everything;
#   5. `dpkg -r`, then `dpkg --purge`: binary and unit gone, then config, data and user gone.
#
# Needs root and: dpkg, file, curl, util-linux (setpriv), adduser, systemd (systemctl,
# systemd-analyze), strace, procps (pgrep); installs cargo-deb with
# `cargo install` if missing. Honours CARGO_TARGET_DIR. Refuses to run if a callmgr package or
# user already exists (it would purge them).
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$PWD
target=x86_64-unknown-linux-gnu
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
token=check-token-0123456789
# Bounded waits: polls of 0.1 s.
polls_max=300

step() { echo "check.sh: == $*"; }
fail() {
    echo "check.sh: FAILED: $*" >&2
    exit 1
}

[ "$(id -u)" = 0 ] || fail "run as root (dpkg -i, a system user)"
for tool in dpkg dpkg-deb file ldd curl setpriv getent adduser systemctl systemd-analyze strace pgrep; do
    command -v "$tool" >/dev/null || fail "missing \`$tool\`: apt-get install -y dpkg file curl util-linux adduser libc-bin systemd strace procps"
done
if dpkg-query -W -f='${Status}' callmgr 2>/dev/null | grep -q 'install\|config-files'; then
    fail "a callmgr package is installed; this check installs and purges its own: dpkg --purge callmgr first"
fi
getent passwd callmgr >/dev/null && fail "a callmgr user exists without the package; this check would delete it"

work=$(mktemp -d /tmp/callmgr-check.XXXXXX)
installed=no
cleanup() {
    local status=$?
    # Only this script's own background jobs that are still running.
    for pid in $(jobs -pr); do
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [ "$installed" = yes ]; then
        dpkg --purge callmgr >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
    [ $status = 0 ] && echo "check.sh: all checks passed in ${SECONDS}s" || echo "check.sh: failed after ${SECONDS}s" >&2
}
trap cleanup EXIT

# wait_for FILE TEXT: until FILE contains TEXT, for at most polls_max polls.
wait_for() {
    local i
    for ((i = 0; i < polls_max; i++)); do
        grep -q -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    fail "no \`$2\` in $1 after $((polls_max / 10))s:
$(cat "$1")"
}
# address_in FILE: the ADDR of the first `listening on http://ADDR` line.
address_in() {
    grep -o 'listening on http://[0-9.:]*' "$1" | head -n1 | sed 's|.*http://||'
}
# wait_exit PID: its exit status, waiting at most polls_max polls.
wait_exit() {
    local i
    for ((i = 0; i < polls_max; i++)); do
        if ! kill -0 "$1" 2>/dev/null; then
            wait "$1" && return 0 || return $?
        fi
        sleep 0.1
    done
    fail "process $1 did not exit within $((polls_max / 10))s"
}
api() { # METHOD ADDRESS PATH [BODY]
    curl -sS --max-time 10 -X "$1" -H "X-Auth-Token: $token" -H 'Content-Type: application/json' \
        ${4:+--data "$4"} "http://$2$3"
}

step "1. static release build"
packaging/build.sh

step "2. .deb"
if ! cargo deb --version >/dev/null 2>&1; then
    cargo install cargo-deb --locked --version 3.8.0
fi
# --no-build: package the binary build.sh made (cargo deb would rebuild without +crt-static).
# --no-strip: keep the symbols [profile.release] keeps, for backtraces and core dumps.
cargo deb --no-build --no-strip --target "$target" --output "$work/callmgr.deb"
deb="$work/callmgr.deb"

info=$(dpkg-deb --info "$deb")
echo "$info"
for expected in "Package: callmgr" "Depends: adduser" "Architecture: amd64" " conffiles" " postinst" " prerm" " postrm"; do
    grep -qF -- "$expected" <<<"$info" || fail "dpkg-deb --info lacks \`$expected\`"
done
conffiles=$(dpkg-deb --info "$deb" conffiles)
for expected in /etc/callmgr/callmgr.yaml /etc/callmgr/retry_config.yaml; do
    grep -qx -- "$expected" <<<"$conffiles" || fail "conffiles lacks $expected: $conffiles"
done
contents=$(dpkg-deb --contents "$deb")
echo "$contents"
# Owner root, shown as 0/0 or root/root.
for expected in "-rwxr-xr-x (0/0|root/root) .* ./usr/bin/callmgr$" \
    "-rw-r--r-- (0/0|root/root) .* ./lib/systemd/system/callmgr.service$" \
    "-rw-r----- (0/0|root/root) .* ./etc/callmgr/callmgr.yaml$" \
    "-rw-r----- (0/0|root/root) .* ./etc/callmgr/retry_config.yaml$" \
    "-rw-r--r-- (0/0|root/root) .* ./usr/share/man/man1/callmgr.1.gz$" \
    "-rw-r--r-- (0/0|root/root) .* ./usr/share/man/man1/callmgr-import.1.gz$" \
    "-rw-r--r-- (0/0|root/root) .* ./usr/share/bash-completion/completions/callmgr$" \
    "-rw-r--r-- (0/0|root/root) .* ./usr/share/zsh/vendor-completions/_callmgr$" \
    "-rw-r--r-- (0/0|root/root) .* ./usr/share/fish/vendor_completions.d/callmgr.fish$" \
    "-rw-r--r-- (0/0|root/root) .* ./usr/share/doc/callmgr/configuration.md$"; do
    grep -Eq -- "$expected" <<<"$contents" || fail "dpkg-deb --contents lacks $expected"
done
for script in postinst prerm postrm; do
    dpkg-deb --info "$deb" "$script" | cmp -s - "packaging/debian/$script" || fail "the .deb's $script differs from packaging/debian/$script"
done
dpkg-deb -x "$deb" "$work/root"
packaged_file=$(file -b "$work/root/usr/bin/callmgr")
case "$packaged_file" in
    *"statically linked"* | *"static-pie linked"*) ;;
    *) fail "the packaged binary is not static: $packaged_file" ;;
esac
cmp -s "$work/root/lib/systemd/system/callmgr.service" systemd/callmgr.service || fail "packaged unit differs"
cmp -s "$work/root/etc/callmgr/callmgr.yaml" packaging/callmgr.yaml || fail "packaged config differs"
zcat "$work/root/usr/share/man/man1/callmgr-serve.1.gz" | grep -q "The service configuration file" || fail "the serve man page lacks --config"

step "3. name resolution in the static binary: a provider named localhost"
binary="$work/root/usr/bin/callmgr"
"$binary" mock-provider --listen 127.0.0.1:0 --token "$token" --delay-ms 100..200 >"$work/mock.log" 2>&1 &
mock_pid=$!
wait_for "$work/mock.log" "mock provider listening on"
mock_port=$(address_in "$work/mock.log" | sed 's/.*://')
printf 'defaults: {max_attempts: 3}\n' >"$work/retry.yaml"
cat >"$work/dns.yaml" <<EOF
listen: 127.0.0.1:0
data_dir: $work/dns-data
tokens: [$token]
provider: {url: "http://localhost:$mock_port/api/initiate-call", timeout: 5s, max_send_attempts: 1}
retry_config: $work/retry.yaml
limits: {shutdown_timeout: 3s}
EOF
# Under strace, for the syscall check below; the service is strace's child.
strace -f -qq -o "$work/serve.trace" "$binary" serve --config "$work/dns.yaml" >"$work/dns.log" 2>&1 &
strace_pid=$!
wait_for "$work/dns.log" "callmgr listening on"
address=$(address_in "$work/dns.log")
campaign_id=$(api POST "$address" /api/v1/campaigns '{"name":"dns check"}' | grep -o '"id":[0-9]*' | head -n1 | cut -d: -f2)
[ -n "$campaign_id" ] || fail "no campaign created"
call_id=$(api POST "$address" /api/v1/initiate-call "{\"phone_number\":\"+14155550123\",\"campaign_id\":$campaign_id}" |
    grep -o '"call_id":"[^"]*"' | cut -d'"' -f4)
[ -n "$call_id" ] || fail "no call created"
for ((i = 0; i < polls_max; i++)); do
    call=$(api GET "$address" "/api/v1/calls/$call_id")
    grep -q '"external_call_id":"mock-' <<<"$call" && break
    sleep 0.1
done
grep -q '"external_call_id":"mock-' <<<"$call" || fail "the dial to localhost:$mock_port never arrived: $call
$(cat "$work/dns.log")"
echo "check.sh: dialled http://localhost:$mock_port from the static binary: $call"
serve_pid=$(pgrep -P "$strace_pid")
kill -TERM "$serve_pid" "$mock_pid"
wait_exit "$strace_pid" || fail "serve exited with $? after SIGTERM"
wait_exit "$mock_pid" || fail "mock-provider exited with $? after SIGTERM"

step "3b. every syscall serve and check-config made is allowed by the unit's SystemCallFilter="
# expand GROUP: the syscalls of a systemd-analyze syscall-filter group, nested groups expanded.
expand() {
    local item
    systemd-analyze syscall-filter "$1" | tail -n +2 | sed 's/^ *//' | grep -v '^#' | grep -v '^$' |
        while read -r item; do
            case "$item" in
                @*) expand "$item" ;;
                *) echo "$item" ;;
            esac
        done
}
strace -f -qq -o "$work/check.trace" "$binary" check-config --config "$work/dns.yaml" >/dev/null
# The unit: SystemCallFilter=@system-service, then SystemCallFilter=~@privileged @resources.
grep -q '^SystemCallFilter=@system-service$' systemd/callmgr.service &&
    grep -q '^SystemCallFilter=~@privileged @resources$' systemd/callmgr.service || fail "the unit's SystemCallFilter changed: update this check"
expand @system-service | sort -u >"$work/allowed"
{ expand @privileged; expand @resources; } | sort -u >"$work/denied"
cat "$work/serve.trace" "$work/check.trace" | grep -oE '^[0-9]+ +[a-z0-9_]+\(' | sed -E 's/^[0-9]+ +//; s/\($//' | sort -u >"$work/used"
# execve is strace starting the program (systemd execs before the filter applies).
blocked=$(comm -23 "$work/used" "$work/allowed" | grep -vx execve || true)
blocked="$blocked $(comm -12 "$work/used" "$work/denied" | tr '\n' ' ')"
[ -z "${blocked// /}" ] || fail "syscalls the unit's filter would refuse (EPERM): $blocked"
echo "check.sh: $(wc -l <"$work/used") distinct syscalls, all allowed: $(tr '\n' ' ' <"$work/used")"

step "4. dpkg -i"
installed=yes
dpkg -i "$deb" | tee "$work/install.log"
grep -q "NOT started" "$work/install.log" || fail "postinst did not say where to set the token"
entry=$(getent passwd callmgr) || fail "no callmgr user"
case "$entry" in
    callmgr:*:/var/lib/callmgr:/usr/sbin/nologin) ;;
    *) fail "callmgr user: $entry" ;;
esac
[ "$(stat -c '%U:%G %a' /var/lib/callmgr)" = "callmgr:callmgr 750" ] || fail "/var/lib/callmgr: $(stat -c '%U:%G %a' /var/lib/callmgr)"
for file in /etc/callmgr/callmgr.yaml /etc/callmgr/retry_config.yaml; do
    [ "$(stat -c '%U:%G %a' $file)" = "root:callmgr 640" ] || fail "$file: $(stat -c '%U:%G %a' $file)"
done
cmp -s /usr/bin/callmgr "$binary" || fail "/usr/bin/callmgr is not the packaged binary"
# Not started: no process runs the installed binary.
for exe in /proc/[0-9]*/exe; do
    [ "$(readlink "$exe" 2>/dev/null)" = /usr/bin/callmgr ] && fail "a process runs /usr/bin/callmgr after install: $exe"
done

as_callmgr() { setpriv --reuid callmgr --regid callmgr --init-groups -- "$@"; }
status=0
as_callmgr /usr/bin/callmgr check-config --config /etc/callmgr/callmgr.yaml >"$work/check.out" 2>"$work/check.err" || status=$?
[ $status = 2 ] || fail "check-config without a token: exit $status, expected 2: $(cat "$work/check.err")"
grep -q '/etc/callmgr/callmgr.yaml' "$work/check.err" && grep -q 'tokens' "$work/check.err" ||
    fail "check-config's message does not name the file and \`tokens\`: $(cat "$work/check.err")"
echo "check.sh: check-config without a token: exit 2: $(cat "$work/check.err")"
VALID_TOKENS=$token EXTERNAL_SERVICE_URL=http://127.0.0.1:9/x \
    as_callmgr /usr/bin/callmgr check-config --config /etc/callmgr/callmgr.yaml >"$work/check.out" 2>&1 ||
    fail "check-config with VALID_TOKENS and EXTERNAL_SERVICE_URL failed: $(cat "$work/check.out")"
tail -n1 "$work/check.out" | grep -qx ok || fail "check-config did not end with ok: $(cat "$work/check.out")"

# What systemd would run, minus systemd: as callmgr, in the state directory, another port.
(cd /var/lib/callmgr && VALID_TOKENS=$token EXTERNAL_SERVICE_URL=http://127.0.0.1:9/x CALLMGR_LISTEN=127.0.0.1:0 \
    exec setpriv --reuid callmgr --regid callmgr --init-groups -- \
    /usr/bin/callmgr serve --config /etc/callmgr/callmgr.yaml) >"$work/serve.log" 2>&1 &
serve_pid=$!
wait_for "$work/serve.log" "callmgr listening on"
address=$(address_in "$work/serve.log")
[ "$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' "http://$address/readyz")" = 200 ] || fail "/readyz is not 200"
[ "$(stat -c %U /var/lib/callmgr/callmgr.redb)" = callmgr ] || fail "/var/lib/callmgr/callmgr.redb missing or not owned by callmgr"
kill -TERM "$serve_pid"
wait_exit "$serve_pid" || fail "installed serve exited with $? after SIGTERM: $(cat "$work/serve.log")"

# Reinstalling runs postinst's upgrade path (`configure <old-version>`): nothing is recreated.
dpkg -i "$deb" >"$work/reinstall.log"
grep -q "NOT started" "$work/reinstall.log" && fail "an upgrade repeated the first-install message"
[ -f /var/lib/callmgr/callmgr.redb ] || fail "an upgrade lost the store"

# An operator enables the service (systemctl edits the links even without a running systemd);
# removing the package must not leave a boot-time link to a unit file that is gone.
wants=/etc/systemd/system/multi-user.target.wants/callmgr.service
systemctl enable callmgr.service
[ -L "$wants" ] || fail "systemctl enable did not create $wants"

step "5. dpkg -r, then dpkg --purge"
dpkg -r callmgr
[ ! -L "$wants" ] || fail "dpkg -r left $wants"
[ ! -e /usr/bin/callmgr ] && [ ! -e /lib/systemd/system/callmgr.service ] || fail "dpkg -r left the binary or the unit"
[ -f /etc/callmgr/callmgr.yaml ] && [ -f /var/lib/callmgr/callmgr.redb ] && getent passwd callmgr >/dev/null ||
    fail "dpkg -r removed config, data or user (only purge may)"
dpkg --purge callmgr
installed=no
dpkg-query -W -f='${Status}' callmgr 2>/dev/null | grep -q 'install\|config-files' && fail "callmgr still known to dpkg after purge"
for path in /etc/callmgr /var/lib/callmgr /usr/bin/callmgr /lib/systemd/system/callmgr.service; do
    [ ! -e "$path" ] || fail "$path left after purge"
done
getent passwd callmgr >/dev/null && fail "user callmgr left after purge"
getent group callmgr >/dev/null && fail "group callmgr left after purge"
exit 0
