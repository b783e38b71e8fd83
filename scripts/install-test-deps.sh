#!/usr/bin/env bash
# Install the Debian packages the test suite uses, when they are missing (`make test` runs this):
#   dovecot-imapd  /usr/sbin/dovecot       a real IMAP server for the importer tests
#   postfix        /usr/sbin/smtp-source   smtp-source/smtp-sink, SMTP load generator and sink
#   chromium       /usr/bin/chromium       a browser for the web view tests
#   postgresql     /usr/lib/postgresql/*/bin/initdb   initdb/pg_ctl/psql for a throwaway server per test run
# Safe to run again: when all four are present it only checks and exits.
# The tests start their own Dovecot/smtp-sink/PostgreSQL on free loopback ports, so the system daemons
# these packages come with are kept from starting (policy-rc.d), stopped if they started anyway and, under
# systemd, disabled: nothing is left listening on ports 25, 143 or 5432 (the packaged `main` cluster is
# created by the package but stays down; the tests do not use it).
set -euo pipefail

paths=(/usr/sbin/dovecot /usr/sbin/smtp-source /usr/bin/chromium)
pkgs=(dovecot-imapd postfix chromium)
services=(dovecot postfix "")

# PostgreSQL's server binaries live under a versioned directory (15 on Debian 12), off PATH.
have_initdb() { compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; }

missing=() stop=()
for i in "${!paths[@]}"; do
    if [[ ! -x ${paths[i]} ]]; then
        missing+=("${pkgs[i]}")
        [[ -n ${services[i]} ]] && stop+=("${services[i]}")
    fi
done
if ! have_initdb; then
    missing+=(postgresql)
    stop+=(postgresql)
fi
if ((${#missing[@]} == 0)); then
    echo "install-test-deps: dovecot, smtp-source, chromium and postgresql are present"
    exit 0
fi

say() { echo "install-test-deps: $*" >&2; }
if ! command -v apt-get >/dev/null; then
    say "apt-get not found; install these packages (or their equivalents) by hand: ${missing[*]}"
    exit 1
fi
sudo=()
if ((EUID != 0)); then
    if ! command -v sudo >/dev/null; then
        say "not root and no sudo; as root run: apt-get install ${missing[*]}"
        exit 1
    fi
    sudo=(sudo)
fi

# invoke-rc.d and deb-systemd-invoke ask policy-rc.d before starting a service; 101 means "don't".
# Only a file we created is removed afterwards.
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# temporary, from ticketd scripts/install-test-deps.sh\nexit 101\n' |
        "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 0755 "$policy"
    trap '"${sudo[@]}" rm -f "$policy"' EXIT
fi

say "installing ${missing[*]}"
"${sudo[@]}" apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"

# Belt and braces, for a policy-rc.d of the admin's that allows starts: stop and disable what we installed.
for svc in "${stop[@]}"; do
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
        "${sudo[@]}" systemctl disable --now "$svc" >/dev/null 2>&1 || true
    fi
    case $svc in
        postfix) "${sudo[@]}" postfix status >/dev/null 2>&1 && { "${sudo[@]}" postfix stop || true; } ;;
        dovecot) "${sudo[@]}" doveadm stop >/dev/null 2>&1 || true ;;
        postgresql)
            # The package creates a `main` cluster; stop it (pg_ctlcluster) if it is running, then the service.
            if command -v pg_lsclusters >/dev/null; then
                while read -r version cluster _port status _rest; do
                    if [[ $cluster == main && $status == online* ]]; then
                        "${sudo[@]}" pg_ctlcluster "$version" main stop || true
                    fi
                done < <(pg_lsclusters --no-header 2>/dev/null || true)
            fi
            "${sudo[@]}" service postgresql stop >/dev/null 2>&1 || true
            ;;
    esac
done

for p in "${paths[@]}"; do
    [[ -x $p ]] || { say "$p is still missing after the install"; exit 1; }
done
have_initdb || { say "/usr/lib/postgresql/*/bin/initdb is still missing after the install"; exit 1; }
say "done"
