#!/bin/sh
# Railway mounts volumes owned by root. When started as root, give the data directory to the
# unprivileged mascot user, then run the server as that user. Started as non-root: run as is.
set -eu
if [ "$(id -u)" = "0" ]; then
  for dir in "${RAILWAY_VOLUME_MOUNT_PATH:-}" "${DATA_DIR:-}"; do
    if [ -n "$dir" ] && [ -d "$dir" ]; then
      chown -R mascot:mascot "$dir"
    fi
  done
  exec gosu mascot "$@"
fi
exec "$@"
