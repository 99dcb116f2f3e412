#!/usr/bin/env bash
# Regenerates the binary seeds of fuzz/seeds/ (the text seeds are written by hand):
# attested documents signed the way IMDS signs them (openssl cms, RSA-2048, a
# metadata.azure.com certificate from a throwaway CA) and ClientHellos offering
# each ALPN protocol the proxy routes (Python's ssl, TLS 1.2 and 1.3).
# Needs openssl and python3. Run from anywhere; it writes only under fuzz/seeds/.
set -euo pipefail
cd "$(dirname "$0")/seeds"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- attested_document: first byte 0 = the rest is the PKCS#7 DER; 1 = the JSON as sent.
mkdir -p attested_document
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/ca.key" -out "$work/ca.pem" \
  -days 3650 -subj "/CN=Fuzz Attestation Root" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout "$work/leaf.key" -out "$work/leaf.csr" \
  -subj "/CN=metadata.azure.com" 2>/dev/null
printf 'subjectAltName=DNS:metadata.azure.com\nauthorityInfoAccess=caIssuers;URI:http://www.microsoft.com/pkiops/certs/fuzz.crt\n' >"$work/ext"
openssl x509 -req -in "$work/leaf.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
  -CAcreateserial -days 3650 -extfile "$work/ext" -out "$work/leaf.pem" 2>/dev/null
printf '%s' '{"licenseType":"","nonce":"abcdefghijklmnopqrstuvwxyzABCDEF","plan":{"name":"","product":"","publisher":""},"sku":"server","subscriptionId":"00000000-0000-0000-0000-000000000000","timeStamp":{"createdOn":"05/28/26 00:00:00 -0000","expiresOn":"05/28/26 06:00:00 -0000"},"vmId":"8c4f7e20-3d5f-4a01-9c9d-2e3f4a5b6c03"}' >"$work/content.json"
for attrs in noattr attr; do
  flag=()
  [ "$attrs" = noattr ] && flag=(-noattr)
  openssl cms -sign -binary -nodetach -outform DER -md sha256 "${flag[@]}" \
    -signer "$work/leaf.pem" -inkey "$work/leaf.key" -in "$work/content.json" \
    -out "$work/doc-$attrs.der"
  { printf '\000'; cat "$work/doc-$attrs.der"; } >"attested_document/der-$attrs"
  b64=$(base64 -w0 "$work/doc-$attrs.der")
  printf '\001{"encoding":"pkcs7","signature":"%s"}' "$b64" >"attested_document/json-$attrs"
done
# The signer certificate alone (read as an AIA download).
{ printf '\000'; openssl x509 -in "$work/leaf.pem" -outform DER; } >attested_document/cert

# --- client_hello: what TLS clients send first.
mkdir -p client_hello
python3 - <<'PY'
import ssl
def hello(alpn, tls12=False):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if alpn:
        ctx.set_alpn_protocols(alpn)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    s = ctx.wrap_bio(inc, out, server_hostname="proxy.example.com")
    try:
        s.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()
cases = {
    "none": ([], False),
    "http": (["h2", "http/1.1"], False),
    "cluster": (["teleport-cluster"], False),
    "tunnel": (["teleport-reversetunnel"], False),
    "app": (["teleport-app"], False),
    "redis": (["teleport-redis-mux", "teleport-redis"], False),
    "other-tls12": (["teleport-postgres"], True),
}
for name, (alpn, tls12) in cases.items():
    with open(f"client_hello/{name}", "wb") as f:
        f.write(hello(alpn, tls12))
PY
echo "seeds written under $(pwd)"
