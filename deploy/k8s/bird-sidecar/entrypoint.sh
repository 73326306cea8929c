#!/bin/sh
# The BIRD sidecar of the quic-lb DaemonSet (deploy/k8s/overlays/anycast-bird).
#
#   entrypoint.sh vip      put the VIP on the node's loopback (init container; needs NET_ADMIN)
#   entrypoint.sh render   print bird/lb.conf.template rendered from the environment
#   entrypoint.sh run      render, check and start BIRD, then announce the VIP only while the
#                          LB's health endpoint answers 200 (bird/vip-health.sh)
#
# Environment: VIP, LOCAL_AS, PEER_ADDR, PEER_AS (the fleet's), HOST_IP (the node's address,
# downward API status.hostIP: BGP source and default router ID), ROUTER_ID, HEALTH_URL,
# TEMPLATE (default: the image's copy of bird/lb.conf.template), RUN_DIR (default /run/bird).
set -eu
TEMPLATE=${TEMPLATE:-/usr/local/share/quic-lb/lb.conf.template}
RUN_DIR=${RUN_DIR:-/run/bird}

render() {
  : "${VIP:?VIP is required}" "${LOCAL_AS:?LOCAL_AS is required}" "${PEER_ADDR:?PEER_ADDR is required}"
  : "${PEER_AS:?PEER_AS is required}" "${HOST_IP:?HOST_IP is required}"
  out=$(sed -e "s/{{ROUTER_ID}}/${ROUTER_ID:-$HOST_IP}/g" -e "s/{{VIP}}/$VIP/g" \
            -e "s/{{LOCAL_ADDR}}/$HOST_IP/g" -e "s/{{LOCAL_AS}}/$LOCAL_AS/g" \
            -e "s/{{PEER_ADDR}}/$PEER_ADDR/g" -e "s/{{PEER_AS}}/$PEER_AS/g" "$TEMPLATE")
  if printf '%s\n' "$out" | grep -q '{{'; then
    echo "entrypoint.sh: placeholder left in $TEMPLATE: $(printf '%s\n' "$out" | grep -o '{{[A-Z_]*}}' | head -n 1)" >&2
    exit 1
  fi
  printf '%s\n' "$out"
}

case "${1:-run}" in
  vip)
    : "${VIP:?VIP is required}"
    exec ip addr replace "$VIP/32" dev lo
    ;;
  render)
    render
    ;;
  run)
    : "${HEALTH_URL:?HEALTH_URL is required}"
    mkdir -p "$RUN_DIR"
    render > "$RUN_DIR/bird.conf"
    bird -p -c "$RUN_DIR/bird.conf"
    bird -f -c "$RUN_DIR/bird.conf" -s "$RUN_DIR/bird.ctl" &
    bird_pid=$!
    # The static protocol `vip` starts disabled: nothing is announced before the LB is healthy.
    vip-health.sh "$HEALTH_URL" "$RUN_DIR/bird.ctl" 1 2 2 &
    health_pid=$!
    # SIGTERM (pod deletion): stop BIRD, which closes the BGP session: the router withdraws the
    # VIP at once while the LB container drains.
    trap 'kill -TERM "$health_pid" "$bird_pid" 2>/dev/null || true' TERM INT
    wait "$bird_pid" || true
    kill -TERM "$health_pid" "$bird_pid" 2>/dev/null || true
    wait
    ;;
  *)
    echo "usage: entrypoint.sh vip|render|run" >&2
    exit 2
    ;;
esac
