#!/bin/sh
# Entrypoint of the mosquitto service: make the password file and the ACL, then run "$@".
#
# MOSQUITTO_USERS holds whitespace-separated USER:PASSWORD pairs, e.g.
#   "controller:s3cret 1:pw-of-box-1 2:pw-of-box-2"
# (a user name has no ':'; a password may contain ':' but no whitespace).
# The target paths are read from the mosquitto config itself (password_file,
# acl_file) so they are named in one place only. Both files are rewritten at
# every start, owned by the broker's user and readable by nobody else.
set -eu

conf="${MOSQUITTO_CONF:-/mosquitto/config/mosquitto.conf}"
acl_source="${MOSQUITTO_ACL_SOURCE:-/mosquitto/config/acl}"

setting() {
    sed -n "s/^$1[[:space:]][[:space:]]*//p" "$conf" | tail -n 1
}

password_file="$(setting password_file)"
acl_file="$(setting acl_file)"
if [ -z "$password_file" ] || [ -z "$acl_file" ]; then
    echo "init.sh: $conf must set password_file and acl_file" >&2
    exit 1
fi
if [ -z "${MOSQUITTO_USERS:-}" ]; then
    echo "init.sh: MOSQUITTO_USERS is empty: set the passwords in docker/.env (see .env.example)" >&2
    exit 1
fi

umask 077
mkdir -p "$(dirname "$password_file")" "$(dirname "$acl_file")"
tmp="$password_file.new"
: > "$tmp"
count=0
set -f  # a password may hold '*' or '?': no file name expansion while splitting the list
for pair in $MOSQUITTO_USERS; do
    user="${pair%%:*}"
    password="${pair#*:}"
    if [ "$user" = "$pair" ] || [ -z "$user" ] || [ -z "$password" ]; then
        echo "init.sh: MOSQUITTO_USERS entry for '$user' is not USER:PASSWORD with a password" >&2
        rm -f "$tmp"
        exit 1
    fi
    # printf is a shell builtin: the plain passwords never appear in a process list.
    printf '%s:%s\n' "$user" "$password" >> "$tmp"
    count=$((count + 1))
done
set +f
mosquitto_passwd -U "$tmp"  # hashes every password in place
mv "$tmp" "$password_file"
cp "$acl_source" "$acl_file"
chmod 0600 "$password_file" "$acl_file"

# Started as root, mosquitto drops to its own user before it reads these files.
if [ "$(id -u)" = "0" ] && id mosquitto >/dev/null 2>&1; then
    chown mosquitto:mosquitto "$(dirname "$password_file")" "$(dirname "$acl_file")"
    chown mosquitto:mosquitto "$password_file" "$acl_file"
    persistence="$(setting persistence_location)"
    if [ -n "$persistence" ] && [ -d "$persistence" ]; then
        chown -R mosquitto:mosquitto "$persistence"
    fi
fi
echo "init.sh: $count MQTT user(s) written to $password_file; ACL copied to $acl_file"

exec "$@"
