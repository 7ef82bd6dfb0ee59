#!/bin/sh
# One-shot setup of the three-country compose federation (docker-compose.yml):
# initialise DE, FR and PL if their data directories are empty, exchange
# their signed descriptors and peer tokens through a shared directory, and
# pair them as `make demo` does: every node pins the two others; DE<->FR and
# FR<->PL are linked (each calls the other), DE and PL reach each other
# through FR. TLS everywhere: clients on 7400, partners on 7401 (mutual TLS).
#
# Idempotent: a node already initialised, pinned or linked is left as it is,
# so the compose `setup` service may run on every `docker compose up`.
#
# In compose, all three operators are this one script, so the fingerprint is
# read from the exchange directory next to the descriptor. Between real
# countries it is read out by phone (see `credfed peer add --help`).
#
# Environment:
#   CREDFED    the credfed command (default: credfed)
#   DATA_ROOT  holds the data directories de/, fr/, pl/ (default: /nodes)
#   EXCHANGE   where descriptors and peer tokens are passed (default: $DATA_ROOT/exchange)
set -eu

CREDFED=${CREDFED:-credfed}
DATA_ROOT=${DATA_ROOT:-/nodes}
EXCHANGE=${EXCHANGE:-$DATA_ROOT/exchange}
CLIENT_PORT=7400
FEDERATION_PORT=7401
METRICS_PORT=9464
# caller:callee pairs, as in src/credfed/demo.py (LINKS).
LINKS="de:fr fr:de fr:pl pl:fr"

# Keys, tokens and descriptors are written owner-only.
umask 077
mkdir -p "$EXCHANGE"

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }
upper() { printf '%s' "$1" | tr '[:lower:]' '[:upper:]'; }
cf() { "$CREDFED" "$@"; }

init_node() {
    cc=$1
    dir=$DATA_ROOT/$cc
    if [ -f "$dir/credfed.toml" ]; then
        # init writes the admin token last: without it the directory is half made.
        [ -f "$dir/admin.token" ] ||
            die "$dir: credfed.toml without admin.token (an interrupted init): empty the volume and run again"
        say "$(upper "$cc") already initialised"
        return
    fi
    # The hostnames go into the server certificate: the compose service name
    # (partners call <cc>:$FEDERATION_PORT) and loopback for the published port.
    cf init --country "$(upper "$cc")" --data-dir "$dir" \
        --listen "0.0.0.0:$CLIENT_PORT" \
        --federation-listen "0.0.0.0:$FEDERATION_PORT" \
        --metrics-listen "0.0.0.0:$METRICS_PORT" \
        --hostname "$cc" --hostname localhost --hostname 127.0.0.1 >/dev/null
    say "$(upper "$cc") initialised"
}

export_descriptor() {
    cc=$1
    [ -s "$EXCHANGE/$cc.fingerprint" ] && [ -s "$EXCHANGE/$cc.json" ] && return
    out=$(cf peer export --data-dir "$DATA_ROOT/$cc" --out "$EXCHANGE/$cc.json.tmp")
    fp=$(printf '%s\n' "$out" | sed -n 's/^fingerprint //p')
    [ -n "$fp" ] || die "$(upper "$cc"): peer export printed no fingerprint"
    mv "$EXCHANGE/$cc.json.tmp" "$EXCHANGE/$cc.json"
    printf '%s\n' "$fp" >"$EXCHANGE/$cc.fingerprint.tmp"
    mv "$EXCHANGE/$cc.fingerprint.tmp" "$EXCHANGE/$cc.fingerprint"
    say "$(upper "$cc") descriptor exported, fingerprint $fp"
}

# The 4th column of `peer list` for a partner: its link endpoint,
# "not linked (relayed)", or nothing when the partner is not pinned.
link_of() {
    cf peer list --data-dir "$DATA_ROOT/$1" | awk -F '\t' -v c="$(upper "$2")" '$1 == c { print $4 }'
}

is_linked() {
    case $1 in "" | "not linked"*) return 1 ;; *) return 0 ;; esac
}

# Pin OTHER at CC; link to it (call it) when the pair is in LINKS.
pair() {
    cc=$1 other=$2
    current=$(link_of "$cc" "$other")
    wanted=no
    for l in $LINKS; do [ "$l" = "$cc:$other" ] && wanted=yes; done
    if [ -n "$current" ] && { [ "$wanted" = no ] || is_linked "$current"; }; then
        say "$(upper "$cc") already pairs with $(upper "$other")"
        return
    fi
    set --
    if [ "$wanted" = yes ]; then
        # A peer token issued by OTHER to CC; passed through the exchange
        # directory and removed once CC holds it.
        token_file=$EXCHANGE/$other-token-for-$cc
        cf token create --data-dir "$DATA_ROOT/$other" --role peer \
            --partner "$(upper "$cc")" --name "$(upper "$cc") node" >"$token_file.tmp"
        mv "$token_file.tmp" "$token_file"
        set -- --token-file "$token_file" --endpoint "$other:$FEDERATION_PORT"
    fi
    if [ -z "$current" ]; then
        cf peer add "$EXCHANGE/$other.json" --fingerprint "$(cat "$EXCHANGE/$other.fingerprint")" \
            --data-dir "$DATA_ROOT/$cc" "$@" >/dev/null
    else
        cf peer link "$(upper "$other")" --data-dir "$DATA_ROOT/$cc" "$@" >/dev/null
    fi
    [ "$wanted" = yes ] && rm -f "$token_file"
    say "$(upper "$cc") pinned $(upper "$other")$([ "$wanted" = yes ] && printf ' and links to %s:%s' "$other" "$FEDERATION_PORT")"
}

for cc in de fr pl; do init_node "$cc"; done
for cc in de fr pl; do export_descriptor "$cc"; done
for cc in de fr pl; do
    for other in de fr pl; do
        [ "$cc" = "$other" ] || pair "$cc" "$other"
    done
done
say "done"
