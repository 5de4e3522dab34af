#!/bin/sh
# Makes sure the servers the test harness starts are installed: nats-server (JetStream) and
# clickhouse-server. Run by `npm test` (pretest). Quiet and quick when both are present.
# Installs them from the Debian archive when run as root; otherwise says what to install and fails.
set -eu

PACKAGES='nats-server clickhouse-server'

# Debian puts both in /usr/sbin, which is not on a normal user's PATH.
has_program() {
  command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ] || [ -x "/usr/local/bin/$1" ]
}

missing=''
for program in nats-server clickhouse-server; do
  has_program "$program" || missing="$missing $program"
done
[ -z "$missing" ] && exit 0

echo "install-servers: missing:$missing" >&2

if [ "$(id -u)" -ne 0 ]; then
  echo "install-servers: the tests need real servers; install them as root and run the tests again:" >&2
  echo "  sudo apt-get install -y $PACKAGES" >&2
  echo "  (or: sudo sh deploy/local/install-servers.sh)" >&2
  exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-servers: no apt-get here; install the packages $PACKAGES (or the nats-server and" >&2
  echo "  clickhouse-server binaries) by other means, then run the tests again." >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive

known_to_apt() {
  for package in $PACKAGES; do
    apt-cache show --no-all-versions "$package" >/dev/null 2>&1 || return 1
  done
}

# A fresh container has empty package lists: refresh them only then, or when the lists are so stale
# that the install fails to download.
if ! known_to_apt; then
  apt-get update
fi

# The tests start their own servers on free ports; the packages' maintainer scripts must not start
# system services. policy-rc.d is Debian's switch for that (respected by invoke-rc.d and
# deb-systemd-invoke); an existing one is left alone.
policy=/usr/sbin/policy-rc.d
created_policy=''
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  created_policy=yes
fi
remove_policy() {
  if [ -n "$created_policy" ]; then rm -f "$policy"; fi
}
trap remove_policy EXIT
trap 'exit 130' INT TERM HUP

# shellcheck disable=SC2086 # PACKAGES is a list of words
if ! apt-get install -y --no-install-recommends $PACKAGES; then
  echo "install-servers: install failed; refreshing the package lists and trying once more" >&2
  apt-get update
  # shellcheck disable=SC2086
  apt-get install -y --no-install-recommends $PACKAGES
fi

for program in nats-server clickhouse-server; do
  if ! has_program "$program"; then
    echo "install-servers: $program is still missing after installing $PACKAGES" >&2
    exit 1
  fi
done
echo "install-servers: installed $PACKAGES" >&2
