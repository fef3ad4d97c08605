#!/bin/sh
# System packages cloudinitd and its tests need on Debian 12 (run as root).
# Idempotent: installs only what is missing; `apt-get update` at most once.
set -eu

PACKAGES="
lxc
debootstrap
openssh-server
openssh-client
sshfs
fuse3
apt-cacher-ng
qemu-system-x86
qemu-utils
cloud-image-utils
graphviz
iproute2
nftables
e2fsprogs
util-linux
mount
rsync
ca-certificates
sudo
python3
python3-venv
awscli
"

if [ "$(id -u)" -ne 0 ]; then
    echo "install-system-deps.sh: run as root (apt-get install)" >&2
    exit 2
fi

export DEBIAN_FRONTEND=noninteractive
missing=""
for p in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$status" in
        "install ok installed") ;;
        *) missing="$missing $p" ;;
    esac
done

if [ -z "$missing" ]; then
    echo "system packages: all present"
    exit 0
fi

echo "installing:$missing"
apt-get update -q
# Services must not start at install time (no systemd here, and cloudinitd
# runs its own apt-cacher-ng bound to its bridge only).
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    created_policy=1
fi
trap '[ "$created_policy" = 1 ] && rm -f "$policy"' EXIT
# apt-cacher-ng asks a debconf question (tunnel HTTPS); keep the default.
apt-get install -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold $missing
echo "system packages: installed$missing"
