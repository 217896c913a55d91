# Sourced by the scripts that make a group of tests runnable (browser.sh, compose.sh, prometheus.sh, nats-py.sh,
# interop.sh): each checks for its tools and installs the missing ones from Debian with apt-get. The caller sets
# LOG_NAME (what its messages start with) before it sources this file.

# log MESSAGE...: one line on stderr.
log() { printf '%s: %s\n' "${LOG_NAME:-scripts}" "$*" >&2; }

# apt_install WHAT ARG...: installs with `apt-get install ARG...` (packages, and options such as
# --no-install-recommends); WHAT names them in the messages. Only root can, so anyone else gets told what to do.
apt_install() {
    local what=$1
    shift
    if [ "$(id -u)" != 0 ]; then
        log "need root to install $what; install it and re-run"
        exit 1
    fi
    log "installing $what"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# require_commands COMMAND...: fails, naming the first one missing, unless every command is on PATH after the install.
require_commands() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || { log "$tool is still missing after the install"; exit 1; }
    done
}
