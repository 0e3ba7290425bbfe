#!/bin/sh
# Entrypoint of the mosquitto service: make the password file and the ACL, then run "$@".
#
# MOSQUITTO_USERS holds whitespace-separated USER:PASSWORD pairs, e.g.
#   "collector-a:s3cret labctl-ada:pw-of-ada viewer-health:pw 1:pw-of-box-1 2:pw-of-box-2"
# (a password may contain ':' but no whitespace). A user name says its role
# (docker/mosquitto/acl): collector-NAME, labctl-NAME, viewer-NAME, or a box id for
# a rig. Any other name is refused: MQTT wildcards, '/', '$', and box ids that are
# reserved for the lab's own users (controller..., collector..., labctl..., viewer...).
# The target paths are read from the mosquitto config itself (password_file,
# acl_file) so they are named in one place only. Both files are rewritten at
# every start, owned by the broker's user and readable by nobody else.
set -eu

conf="${MOSQUITTO_CONF:-/mosquitto/config/mosquitto.conf}"
acl_source="${MOSQUITTO_ACL_SOURCE:-/mosquitto/config/acl}"
key_source="${MOSQUITTO_KEY_SOURCE:-/mosquitto/certs/private/server.key}"
acl_dir="$(dirname "$acl_source")"

setting() {
    sed -n "s/^$1[[:space:]][[:space:]]*//p" "$conf" | tail -n 1
}

fail() {
    echo "init.sh: $*" >&2
    rm -f "${tmp:-}" "${acl_tmp:-}"
    exit 1
}

password_file="$(setting password_file)"
acl_file="$(setting acl_file)"
if [ -z "$password_file" ] || [ -z "$acl_file" ]; then
    fail "$conf must set password_file and acl_file"
fi
if [ -z "${MOSQUITTO_USERS:-}" ]; then
    fail "MOSQUITTO_USERS is empty: set the passwords in docker/.env (see .env.example)"
fi

# The role of a user name, or nothing when the name is not allowed.
role_of() {
    case "$1" in
        collector-*) role=collector; rest="${1#collector-}" ;;
        labctl-*) role=labctl; rest="${1#labctl-}" ;;
        viewer-*) role=viewer; rest="${1#viewer-}" ;;
        *) role=rig; rest="$1" ;;
    esac
    # Letters, digits, '_' and '-' only (a box id's alphabet, 1-32 of them): no '+', '#',
    # '/', '$' or '%', which would become topic wildcards or levels in the ACL patterns.
    case "$rest" in
        "" | *[!A-Za-z0-9_-]*) return 0 ;;
    esac
    if [ "${#rest}" -gt 32 ]; then
        return 0
    fi
    if [ "$role" = rig ]; then
        lower="$(printf '%s' "$1" | tr 'A-Z' 'a-z')"
        case "$lower" in
            controller* | collector* | labctl* | viewer*) return 0 ;;
        esac
    fi
    echo "$role"
}

umask 077
mkdir -p "$(dirname "$password_file")" "$(dirname "$acl_file")"
tmp="$password_file.new"
acl_tmp="$acl_file.new"
: > "$tmp"
cp "$acl_source" "$acl_tmp"
count=0
seen=" "
set -f  # a password may hold '*' or '?': no file name expansion while splitting the list
for pair in $MOSQUITTO_USERS; do
    user="${pair%%:*}"
    password="${pair#*:}"
    if [ "$user" = "$pair" ] || [ -z "$user" ] || [ -z "$password" ]; then
        fail "MOSQUITTO_USERS entry for '$user' is not USER:PASSWORD with a password"
    fi
    role="$(role_of "$user")"
    if [ -z "$role" ]; then
        fail "MOSQUITTO_USERS: user name '$user' is not allowed: use a box id (1-32 letters," \
            "digits, '_' or '-', not starting with controller, collector, labctl or viewer)" \
            "or collector-NAME, labctl-NAME, viewer-NAME"
    fi
    case "$seen" in
        *" $user "*) fail "MOSQUITTO_USERS: user '$user' is listed twice" ;;
    esac
    seen="$seen$user "
    # printf is a shell builtin: the plain passwords never appear in a process list.
    printf '%s:%s\n' "$user" "$password" >> "$tmp"
    if [ "$role" != rig ]; then
        printf '\nuser %s\n' "$user" >> "$acl_tmp"
        grep -v '^[[:space:]]*#' "$acl_dir/acl.$role" | grep -v '^[[:space:]]*$' >> "$acl_tmp"
    fi
    count=$((count + 1))
done
set +f
mosquitto_passwd -U "$tmp"  # hashes every password in place
mv "$tmp" "$password_file"
mv "$acl_tmp" "$acl_file"
chmod 0600 "$password_file" "$acl_file"

# The TLS listener's private key: copied next to the other private files so that only
# the broker's user can read it, whoever owns the mounted certificate folder.
keyfile="$(setting keyfile)"
if [ -n "$keyfile" ]; then
    if [ ! -f "$key_source" ]; then
        fail "no TLS key at $key_source: run docker/make-certs.sh docker/certs server HOST..."
    fi
    cp "$key_source" "$keyfile"
    chmod 0600 "$keyfile"
fi

# Started as root, mosquitto drops to its own user before it reads these files.
if [ "$(id -u)" = "0" ] && id mosquitto >/dev/null 2>&1; then
    chown mosquitto:mosquitto "$(dirname "$password_file")" "$(dirname "$acl_file")"
    chown mosquitto:mosquitto "$password_file" "$acl_file"
    if [ -n "$keyfile" ]; then
        chown mosquitto:mosquitto "$keyfile"
    fi
    persistence="$(setting persistence_location)"
    if [ -n "$persistence" ] && [ -d "$persistence" ]; then
        chown -R mosquitto:mosquitto "$persistence"
    fi
fi
echo "init.sh: $count MQTT user(s) written to $password_file; ACL written to $acl_file"

exec "$@"
