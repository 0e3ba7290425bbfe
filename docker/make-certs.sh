#!/bin/sh
# Make the lab's own certificate authority and certificates for the broker's TLS listener.
#
#   docker/make-certs.sh DIR server HOST...   # CA (made once) + the broker's certificate
#   docker/make-certs.sh DIR client NAME      # a client certificate (optional, see below)
#
# DIR (docker/certs for the compose stack) gets:
#   public/ca.pem, public/server.pem   what every client may see; rigs and labctl trust
#                                      ca.pem (LABAGENT_CA_FILE, LABCTL_MQTT_CA_FILE)
#   private/ca.key, private/server.key the CA's key (keep it offline once the
#                                      certificates are made) and the broker's key
#   clients/NAME.pem, clients/NAME.key a client certificate, for that client only
# The server certificate names the HOSTs (names or IP addresses clients use to reach
# the broker); "mosquitto", "localhost" and 127.0.0.1 are always added. Client
# certificates are used only when the broker sets require_certificate true. Private
# keys are written mode 0600.
set -eu

if [ "$#" -lt 3 ]; then
    echo "usage: $0 DIR server HOST... | $0 DIR client NAME" >&2
    exit 2
fi
dir="$1"
kind="$2"
shift 2
mkdir -p "$dir/public" "$dir/private" "$dir/clients"
cd "$dir"
chmod 0700 private
umask 077
days="${CERT_DAYS:-825}"

if [ ! -f public/ca.pem ]; then
    openssl req -x509 -newkey rsa:3072 -nodes -days 3650 -keyout private/ca.key \
        -out public/ca.pem -subj "/CN=reachlab lab CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi

case "$kind" in
    server)
        san="DNS:mosquitto,DNS:localhost,IP:127.0.0.1"
        for host in "$@"; do
            case "$host" in
                *[!0-9.]*) san="$san,DNS:$host" ;;
                *) san="$san,IP:$host" ;;
            esac
        done
        name=server
        cert=public/server.pem
        key=private/server.key
        subject="/CN=$1"
        ext="subjectAltName=$san
extendedKeyUsage=serverAuth"
        ;;
    client)
        name="$1"
        case "$name" in
            "" | *[!A-Za-z0-9_-]*) echo "$0: client name '$name': letters, digits, '_', '-'" >&2; exit 2 ;;
        esac
        cert="clients/$name.pem"
        key="clients/$name.key"
        subject="/CN=$name"
        ext="extendedKeyUsage=clientAuth"
        ;;
    *)
        echo "$0: unknown kind '$kind': server or client" >&2
        exit 2
        ;;
esac

printf '%s\n' "$ext" > "private/$name.ext"
openssl req -newkey rsa:2048 -nodes -keyout "$key" -out "private/$name.csr" \
    -subj "$subject" 2>/dev/null
openssl x509 -req -in "private/$name.csr" -CA public/ca.pem -CAkey private/ca.key \
    -CAcreateserial -CAserial private/ca.srl -days "$days" -out "$cert" \
    -extfile "private/$name.ext" 2>/dev/null
rm -f "private/$name.csr" "private/$name.ext"
chmod 0755 public clients
chmod 0644 public/*.pem "$cert"
chmod 0600 "$key"
echo "$0: wrote $dir/$cert and $dir/$key (CA: $dir/public/ca.pem)"
