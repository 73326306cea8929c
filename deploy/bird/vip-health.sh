#!/bin/sh
# vip-health.sh: announce the anycast VIP only while the local QUIC-LB, or the local QUIC server
# in server mode (docs/anycast.md), answers its /healthz with 200.
#
#   vip-health.sh HEALTH_URL [BIRD_SOCKET] [INTERVAL_S] [RISE] [FALL]
#
# Polls HEALTH_URL (the node's health endpoint, which fails first on shutdown) every INTERVAL_S
# seconds (default 1). After RISE consecutive successes (default 2) it enables the BIRD static
# protocol that carries the VIP (`birdc enable vip`: route announced); after FALL consecutive
# failures (default 2) it disables it (route withdrawn, the router's ECMP route loses this node).
# The protocol name can be changed with VIP_PROTOCOL. lb.conf.template starts `vip` disabled, so
# a fresh node announces nothing until it is healthy. Run it under systemd next to bird.
set -u
URL=${1:?usage: vip-health.sh HEALTH_URL [BIRD_SOCKET] [INTERVAL_S] [RISE] [FALL]}
SOCK=${2:-/run/bird/bird.ctl}
INTERVAL=${3:-1}
RISE=${4:-2}
FALL=${5:-2}
PROTO=${VIP_PROTOCOL:-vip}
state=unknown
ok=0
bad=0
trap 'exit 0' TERM INT
while :; do
  if curl -fsS -o /dev/null --max-time 1 "$URL" 2>/dev/null; then
    ok=$((ok + 1)); bad=0
  else
    bad=$((bad + 1)); ok=0
  fi
  if [ "$state" != up ] && [ "$ok" -ge "$RISE" ]; then
    if birdc -s "$SOCK" enable "$PROTO" >/dev/null; then state=up; echo "vip-health: healthy, announcing ($PROTO enabled)"; fi
  fi
  if [ "$state" != down ] && [ "$bad" -ge "$FALL" ]; then
    if birdc -s "$SOCK" disable "$PROTO" >/dev/null; then state=down; echo "vip-health: unhealthy, withdrawing ($PROTO disabled)"; fi
  fi
  sleep "$INTERVAL"
done
