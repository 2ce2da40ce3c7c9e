#!/bin/sh
# Builds Mosquitto's password file from the environment (docker-compose service `mosquitto-passwd`,
# run once before the broker starts, on every `docker compose up`):
#   MQTT_SUNSHARE_PASSWORD  the password of Sunshare's own account `sunshare`
#   MQTT_LOGGER_ACCOUNTS    the data loggers' accounts, "id:password" separated by spaces or new lines
#                           (the id is the logger's `id` in [[mqtt.loggers]]; no space in a password)
# The file holds only salted hashes (mosquitto_passwd -b). It and a copy of the ACL are written to
# $AUTH_DIR (default /mosquitto/auth), readable by the broker's user only.
set -eu
auth_dir=${AUTH_DIR:-/mosquitto/auth}
acl_src=${ACL_SRC:-/mosquitto/acl}
owner=${AUTH_OWNER-mosquitto:mosquitto}

tmp="$auth_dir/passwd.new"
rm -f "$tmp"
touch "$tmp"
chmod 0600 "$tmp"
mosquitto_passwd -b "$tmp" sunshare "$MQTT_SUNSHARE_PASSWORD"
count=0
for account in $MQTT_LOGGER_ACCOUNTS; do
    id=${account%%:*}
    password=${account#*:}
    if [ "$id" = "$account" ] || [ -z "$id" ] || [ -z "$password" ]; then
        echo "MQTT_LOGGER_ACCOUNTS: '$id' is not written as id:password" >&2
        rm -f "$tmp"
        exit 1
    fi
    case "$id" in
        sunshare | *[+#/]*)
            echo "MQTT_LOGGER_ACCOUNTS: '$id' cannot be a logger id (sunshare is Sunshare's own account; no + # /)" >&2
            rm -f "$tmp"
            exit 1
            ;;
    esac
    mosquitto_passwd -b "$tmp" "$id" "$password"
    count=$((count + 1))
done
cp "$acl_src" "$auth_dir/acl.new"
chmod 0600 "$auth_dir/acl.new"
if [ -n "$owner" ]; then
    chown "$owner" "$tmp" "$auth_dir/acl.new"
fi
mv "$tmp" "$auth_dir/passwd"
mv "$auth_dir/acl.new" "$auth_dir/acl"
echo "mosquitto accounts written: sunshare and $count data logger(s)"
