#!/usr/bin/env python3
"""Checks codec/testdata/vectors.json against docs/format.md without any Go code.

Needs the `cryptography` package; zstd-compressed vectors are checked up to decryption (flags and AEAD) unless the `zstandard`
package is installed. Run: python3 codec/testdata/verify_vectors.py
"""
import base64, json, os, struct, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

here = os.path.dirname(os.path.abspath(__file__))
vf = json.load(open(os.path.join(here, "vectors.json")))
ks = json.load(open(os.path.join(here, vf["keyset"])))

# AesGcmKey protobuf: field 3 (key_value), tag 0x1a, then a one-byte length, then the key.
keys = {}
for k in ks["key"]:
    v = base64.b64decode(k["keyData"]["value"])
    assert v[0] == 0x1A and v[1] == 32, "expected a 32-byte AES-256-GCM key"
    keys[k["keyId"]] = v[2:34]

def field(s):
    return struct.pack(">I", len(s)) + s

def ad(key_id, namespace):
    return field(b"blindfold/v1") + field(key_id.encode()) + field(namespace.encode())

def decode(env, namespace):
    md = {k: base64.b64decode(v) for k, v in env.get("metadata", {}).items()}
    if md.get("encoding") != b"binary/encrypted" or "blindfold-format" not in md:
        return "not ours", None
    if md["blindfold-format"] != b"1":
        return "ErrUnsupportedVersion", None
    if not md.get("blindfold-key-id") or "blindfold-namespace" not in md:
        return "ErrMalformed", None
    if md["blindfold-namespace"] != namespace.encode():
        return "ErrWrongNamespace", None
    data = base64.b64decode(env.get("data", ""))
    if len(data) < 33:
        return "ErrTruncated", None
    key_id = md["blindfold-key-id"].decode()
    tink_id = int(key_id.rsplit("/", 1)[1], 16)
    if tink_id not in keys:
        return "ErrUnknownKey", None
    if data[0] != 0x01 or struct.unpack(">I", data[1:5])[0] != tink_id:
        return "ErrTampered", None
    try:
        pt = AESGCM(keys[tink_id]).decrypt(data[5:17], data[17:], ad(key_id, namespace))
    except Exception:
        return "ErrTampered", None
    if len(pt) == 0 or pt[0] & 0xFE:
        return "ErrMalformed", None
    return "", pt

failures = 0
for v in vf["vectors"]:
    err, pt = decode(v["envelope"], v["decode_namespace"])
    ok = err == v.get("error", "")
    if ok and pt is not None:
        ok = pt.hex() == v["plaintext_hex"] and ad(v["key_id"], v["namespace"]).hex() == v["associated_data_hex"]
    print(("ok  " if ok else "FAIL"), v["name"], err or "decrypted")
    failures += not ok
sys.exit(1 if failures else 0)
