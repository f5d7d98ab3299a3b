# Sourced by the install scripts beside it: `apt_install PACKAGE...` installs Debian packages
# quietly without recommends (as root, else through sudo); `as_root CMD...` runs a command likewise.
as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
