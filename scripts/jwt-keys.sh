#!/usr/bin/env bash
# Puts the public half of user-service's RS256 signing key where the edge and the mesh verify
# tokens: Kong's jwt credential (kong/kong.yml, and the ConfigMap generated from it) and
# Istio's inline JWKS (istio/values.yaml). Kong does not fetch a JWKS, and istiod cannot reach
# an in-mesh one, so the key is configuration that must follow the signing key.
#
#   scripts/jwt-keys.sh KEY.pem            # use an existing private key (PKCS#1 or PKCS#8)
#   scripts/jwt-keys.sh --generate KEY.pem # make a new 2048-bit key there first
#
# Then give user-service the private key, e.g. in Kubernetes:
#   kubectl -n microservices-platform create secret generic user-service-jwt --from-file=jwt.pem=KEY.pem
# The repository ships deploy/compose/dev-jwt.pem (a DEVELOPMENT key, public by definition)
# and the matching public key, so the Compose stack works out of the box. Replace both before
# any real deployment.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = --generate ]; then
  [ $# -eq 2 ] || { echo "usage: $0 --generate KEY.pem" >&2; exit 2; }
  (umask 077; openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$2" 2>/dev/null)
  shift
fi
key=${1:?usage: $0 [--generate] KEY.pem}
[ -r "$key" ] || { echo "$0: cannot read $key" >&2; exit 1; }

public_pem=$(openssl pkey -in "$key" -pubout)
modulus_hex=$(openssl rsa -in "$key" -noout -modulus 2>/dev/null | cut -d= -f2)
exponent=$(openssl rsa -in "$key" -noout -text 2>/dev/null | sed -n 's/^publicExponent: \([0-9]*\).*/\1/p')

PUBLIC_PEM=$public_pem MODULUS_HEX=$modulus_hex EXPONENT=$exponent python3 - <<'PY'
import base64, os, re, pathlib

def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

n = b64url(bytes.fromhex(os.environ["MODULUS_HEX"]))
e_int = int(os.environ["EXPONENT"])
e = b64url(e_int.to_bytes((e_int.bit_length() + 7) // 8, "big"))
pem = os.environ["PUBLIC_PEM"].strip().splitlines()

kong = pathlib.Path("kong/kong.yml")
text = kong.read_text()
block = re.compile(r"(?P<head>( *)rsa_public_key: \|\n)(?P<body>(?:\2  .*\n)+)")
match = block.search(text)
if not match:
    raise SystemExit("kong/kong.yml: no rsa_public_key block found")
indent = " " * (len(match.group(2)) + 2)
text = text[: match.start("body")] + "".join(f"{indent}{line}\n" for line in pem) + text[match.end("body"):]
kong.write_text(text)

istio = pathlib.Path("istio/values.yaml")
text = istio.read_text()
text, count_n = re.subn(r'(?m)^(\s*"n": ).*$', lambda m: m.group(1) + n, text)
text, count_e = re.subn(r'(?m)^(\s*"e": ).*$', lambda m: m.group(1) + e, text)
if (count_n, count_e) != (1, 1):
    raise SystemExit("istio/values.yaml: expected one publicKey n and e")
istio.write_text(text)
print(f"public key written to kong/kong.yml and istio/values.yaml (n={n[:12]}…, e={e})")
PY
python3 scripts/checks/kong_k8s.py --write
