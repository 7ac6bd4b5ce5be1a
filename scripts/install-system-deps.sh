#!/usr/bin/env bash
# System packages the test suite needs besides Python and llama-server: nginx (the suite starts its
# own nginx on 127.0.0.1 with its own config, as a reverse proxy in front of llama-server).
# Installs only what is missing, with apt-get, as root. The package's system service is not
# started: Debian's policy-rc.d hook refuses it during the install, and a system nginx started all
# the same is stopped through its PID file. With CI=true a failure is an error; elsewhere a warning.
set -euo pipefail
say() { echo "install-system-deps: $*" >&2; }
in_ci=false
case "${CI:-}" in 1|true|TRUE|True|yes) in_ci=true ;; esac
fail() {
  if $in_ci; then say "error: $*"; exit 1; fi
  say "warning: $* (the tests that need it will fail)"; exit 0
}
have_nginx() { command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]]; }

missing=()
have_nginx || missing+=(nginx)
[[ ${#missing[@]} == 0 ]] && exit 0

[[ $(id -u) == 0 ]] || fail "${missing[*]} missing; as root: apt-get install ${missing[*]}"
command -v apt-get >/dev/null 2>&1 || fail "${missing[*]} missing and no apt-get here: install it yourself"
say "installing ${missing[*]} with apt-get (once per machine)"

policy=/usr/sbin/policy-rc.d   # exit 101 = "do not start services" for invoke-rc.d in postinst scripts
made_policy=false
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=true
fi
log=$(mktemp)
trap '$made_policy && rm -f "$policy"; rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >"$log" 2>&1 || say "apt-get update failed; trying the install with the package lists there are"
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$log" 2>&1; then
  tail -n 20 "$log" >&2
  fail "apt-get install ${missing[*]} failed"
fi

# A system nginx started all the same (by a postinst without the hook): stop it by its PID file.
pid_file=/run/nginx.pid
if [[ -s $pid_file ]]; then
  pid=$(<"$pid_file")
  if [[ $pid =~ ^[0-9]+$ ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == nginx ]]; then
    say "stopping the system nginx the package started (pid $pid)"
    kill -QUIT "$pid" || true
  fi
fi
have_nginx || fail "nginx still missing after apt-get install"
say "nginx: $(nginx -v 2>&1 || /usr/sbin/nginx -v 2>&1)"
