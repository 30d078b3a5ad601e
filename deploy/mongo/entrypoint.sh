#!/usr/bin/env bash
# compose.yaml's MongoDB: a one-node replica set `rs0` with authentication.
#
# A replica set with authentication needs an internal key file (mode 400, owned by
# the server's user). A one-node set's members all read the same file, so it is made
# once, at random, in the data volume; then the image's own entrypoint runs (it
# creates the root user from MONGO_INITDB_ROOT_PASSWORD_FILE and runs
# /docker-entrypoint-initdb.d/ on the first start, then drops to the `mongodb` user).
set -euo pipefail
keyfile=/data/db/replica-set.key
if [ ! -s "$keyfile" ]; then
  (umask 077 && head -c 756 /dev/urandom | base64 -w 0 >"$keyfile")
fi
chown mongodb:mongodb "$keyfile"
chmod 400 "$keyfile"
exec docker-entrypoint.sh mongod --replSet rs0 --bind_ip_all --keyFile "$keyfile"
