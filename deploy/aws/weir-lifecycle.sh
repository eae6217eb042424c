#!/bin/bash
# weir-lifecycle: lets weir flush before Auto Scaling terminates this instance.
#
# Runs as a service (weir-lifecycle.service) on every aggregator instance of
# deploy/cloudformation/weir-aggregator.yaml. It polls the instance metadata service for the
# instance's Auto Scaling target lifecycle state. When that becomes "Terminated", the instance
# has already been deregistered from the NLB's target group (the deregistration delay has
# passed, so no forwarder is connected any more) and waits in Terminating:Wait on the
# stack's termination lifecycle hook. Then this script:
#   1. asks weir to flush every buffer now (SIGUSR1), again every 30 s, and waits until the
#      chunk store under WEIR_BUFFER_DIR holds no chunk, recording lifecycle heartbeats so the
#      hook does not time out while deliveries are still being retried;
#   2. stops weir (SIGTERM: drains, flushes what is left, exits);
#   3. completes the lifecycle action so that the termination goes on.
# It gives up waiting at WEIR_DRAIN_SECONDS and completes the action anyway, logging how many
# chunks were left (they are lost with the instance's root volume).
#
# Environment (from /etc/weir/lifecycle.env, written by the launch template):
#   WEIR_ASG_NAME        the Auto Scaling group's name
#   WEIR_LIFECYCLE_HOOK  the termination lifecycle hook's name
#   WEIR_BUFFER_DIR      the chunk store root (default /var/lib/weir/buffer)
#   WEIR_DRAIN_SECONDS   the longest wait for the buffers to empty (default 900)
#   AWS_REGION           the region, for the AWS CLI
# and, for tests: WEIR_IMDS_URL (default http://169.254.169.254), WEIR_POLL_SECONDS (5).
set -uo pipefail

: "${WEIR_ASG_NAME:?WEIR_ASG_NAME is not set}"
: "${WEIR_LIFECYCLE_HOOK:?WEIR_LIFECYCLE_HOOK is not set}"
buffer_dir=${WEIR_BUFFER_DIR:-/var/lib/weir/buffer}
drain_seconds=${WEIR_DRAIN_SECONDS:-900}
poll=${WEIR_POLL_SECONDS:-5}
imds=${WEIR_IMDS_URL:-http://169.254.169.254}/latest

log() { echo "weir-lifecycle: $*"; }

metadata() {
  local token
  token=$(curl -sf -m 5 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' "$imds/api/token") &&
    curl -sf -m 5 -H "X-aws-ec2-metadata-token: $token" "$imds/meta-data/$1"
}

# Chunks waiting for delivery (each buffer keeps them as buffer.*.log with a .meta beside).
# Chunks already set aside in failed/ or corrupt/ will not be delivered by waiting longer, and
# free/ holds delivered chunk files kept for reuse, not data.
pending_chunks() {
  find "$buffer_dir" \( -name failed -o -name corrupt -o -name free \) -prune -o \
    -type f -name 'buffer.*' ! -name '*.meta' -print 2>/dev/null | wc -l
}

lifecycle() {
  aws autoscaling "$1" --auto-scaling-group-name "$WEIR_ASG_NAME" \
    --lifecycle-hook-name "$WEIR_LIFECYCLE_HOOK" --instance-id "$instance_id" "${@:2}"
}

instance_id=$(metadata instance-id) || { log "cannot read the instance id"; exit 1; }
log "watching instance $instance_id of $WEIR_ASG_NAME"

while :; do
  state=$(metadata autoscaling/target-lifecycle-state || true)
  [ "$state" = Terminated ] && break
  sleep "$poll"
done

log "termination requested: flushing weir's buffers (at most ${drain_seconds}s)"
start=$SECONDS
last_heartbeat=$SECONDS
last_flush=-30
while [ "$(pending_chunks)" -gt 0 ] && [ $((SECONDS - start)) -lt "$drain_seconds" ]; do
  if [ $((SECONDS - last_flush)) -ge 30 ]; then
    systemctl kill -s USR1 weir.service || true
    last_flush=$SECONDS
  fi
  if [ $((SECONDS - last_heartbeat)) -ge 60 ]; then
    lifecycle record-lifecycle-action-heartbeat || log "could not record a heartbeat"
    last_heartbeat=$SECONDS
  fi
  sleep "$poll"
done
pending=$(pending_chunks)
if [ "$pending" -eq 0 ]; then
  log "the buffers are empty after $((SECONDS - start))s"
else
  log "gave up waiting after ${drain_seconds}s: $pending chunk(s) pending"
fi

log "stopping weir (it flushes what is left)"
systemctl stop weir.service
left=$(pending_chunks)
if [ "$left" -gt 0 ]; then
  log "WARNING: $left chunk(s) were not delivered and are lost with this instance"
fi

lifecycle complete-lifecycle-action --lifecycle-action-result CONTINUE ||
  log "could not complete the lifecycle action; the hook's timeout will"
