#!/usr/bin/env python3
"""Checks codec/testdata/vectors.json (format v1) and vectors_v2.json (format v2) against docs/format.md without any Go code.

Needs the `cryptography` package; zstd-compressed vectors are checked up to decryption (header, flags and AEAD) unless the
`zstandard` package is installed. Run: python3 codec/testdata/verify_vectors.py
"""
import base64, hashlib, json, os, re, struct, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.cmac import CMAC
from cryptography.hazmat.primitives.ciphers import algorithms

try:
    import zstandard
except ImportError:
    zstandard = None

here = os.path.dirname(os.path.abspath(__file__))

# --- keys (docs/format.md §4, v2 §5) ---------------------------------------------------------------------------------

def read_keys(name):
    """Returns {tink key id: (type, key bytes)} for a cleartext Tink keyset of AES-GCM and XAES-256-GCM keys (TINK prefix)."""
    keys = {}
    for k in json.load(open(os.path.join(here, name)))["key"]:
        v = base64.b64decode(k["keyData"]["value"])
        assert k["outputPrefixType"] == "TINK"
        if k["keyData"]["typeUrl"].endswith("/google.crypto.tink.AesGcmKey"):
            # AesGcmKey: field 3 (key_value), tag 0x1a, one-byte length 32, the key.
            assert v[0] == 0x1A and v[1] == 32, "expected a 32-byte AES-256-GCM key"
            keys[k["keyId"]] = ("aes-gcm", v[2:34])
        elif k["keyData"]["typeUrl"].endswith("/google.crypto.tink.XAesGcmKey"):
            # XAesGcmKey: field 2 (params: field 1 salt_size = 8), then field 3 (key_value, 32 bytes).
            assert v[:4] == bytes([0x12, 0x02, 0x08, 0x08]) and v[4] == 0x1A and v[5] == 32, "expected XAES-256-GCM, 8-byte salt"
            keys[k["keyId"]] = ("xaes-gcm", v[6:38])
    return keys

def tink_decrypt(key, data, ad):
    """Opens a Tink ciphertext (without its 5-byte prefix) of an AES-256-GCM or XAES-256-GCM (8-byte salt) key."""
    kind, k = key
    if kind == "aes-gcm":
        return AESGCM(k).decrypt(data[:12], data[12:], ad)
    # XAES-256-GCM (C2SP/XAES-256-GCM, as Tink derives it): the per-message key is AES-CMAC(k, 0x00 0x01 'X' 0x00 || salt
    # padded to 12 bytes) || AES-CMAC(k, 0x00 0x02 'X' 0x00 || the same); then AES-256-GCM with the 12-byte nonce.
    salt, nonce, ct = data[:8], data[8:20], data[20:]
    padded = salt + bytes(12 - len(salt))
    derived = b""
    for block in (b"\x00\x01X\x00", b"\x00\x02X\x00"):
        c = CMAC(algorithms.AES(k))
        c.update(block + padded)
        derived += c.finalize()
    return AESGCM(derived).decrypt(nonce, ct, ad)

def field(s):
    return struct.pack(">I", len(s)) + s

# --- format v1 (docs/format.md §2-§7) --------------------------------------------------------------------------------

def ad_v1(key_id, namespace):
    return field(b"blindfold/v1") + field(key_id.encode()) + field(namespace.encode())

def decode_v1(keys, md, data, namespace):
    if md["blindfold-format"] != b"1":
        return "ErrUnsupportedVersion", None
    if not md.get("blindfold-key-id") or "blindfold-namespace" not in md:
        return "ErrMalformed", None
    if md["blindfold-namespace"] != namespace.encode():
        return "ErrWrongNamespace", None
    if len(data) < 33:
        return "ErrTruncated", None
    key_id = md["blindfold-key-id"].decode()
    tink_id = int(key_id.rsplit("/", 1)[1], 16)
    if tink_id not in keys:
        return "ErrUnknownKey", None
    if data[0] != 0x01 or struct.unpack(">I", data[1:5])[0] != tink_id:
        return "ErrTampered", None  # the Tink prefix must name the metadata's key
    try:
        pt = tink_decrypt(keys[tink_id], data[5:], ad_v1(key_id, namespace))
    except Exception:
        return "ErrTampered", None
    if len(pt) == 0 or pt[0] & 0xFE:
        return "ErrMalformed", None
    return "", pt

# --- format v2 (docs/format.md, part 2) -------------------------------------------------------------------------------

SCOPE = re.compile(rb"^[A-Za-z0-9_\-][A-Za-z0-9._\-]{0,199}$")

def default_scope(namespace):
    if not namespace.startswith("_") and SCOPE.match(namespace.encode()):
        return namespace
    return "_" + hashlib.sha256(namespace.encode()).hexdigest()

def uvarint(b, i):
    """Reads a minimal uvarint at b[i:]; returns (value, next index), or raises ValueError/IndexError."""
    n = shift = 0
    start = i
    while True:
        c = b[i]
        i += 1
        n |= (c & 0x7F) << shift
        if c < 0x80:
            break
        shift += 7
        if shift > 63:
            raise ValueError("varint overflow")
    if len(bytes_uvarint(n)) != i - start:
        raise ValueError("non-minimal varint")
    return n, i

def bytes_uvarint(n):
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)

def length_prefixed(data, i, limit):
    try:
        n, i = uvarint(data, i)
    except IndexError:
        return "ErrTruncated", None, i
    except ValueError:
        return "ErrMalformed", None, i
    if n > limit:
        return "ErrMalformed", None, i
    if len(data) - i < n:
        return "ErrTruncated", None, i
    return "", data[i:i + n], i + n

def parse_header(md, data):
    """Parses the header of a v2 envelope in either layout (docs/format.md §13); returns (error, header dict)."""
    if "blindfold-header" in md:  # the metadata layout: the value is the header without its magic, data the ciphertext
        if len(data) >= 2 and data[0] == 0xBF and 0x02 <= data[1] <= 0x0F:
            return "ErrMalformed", None  # a header in both places
        core, hdr, in_md = md["blindfold-header"], md["blindfold-header"], True
        if not core:
            return "ErrMalformed", None
        if core[0] != 0x02:
            return ("ErrUnsupportedVersion" if 0x03 <= core[0] <= 0x0F else "ErrMalformed"), None
    else:  # the compact layout: 0xBF || core || ciphertext
        core, in_md = data[1:], False
        if core[0] != 0x02:
            return "ErrUnsupportedVersion", None
    if len(core) < 4:
        return "ErrTruncated", None
    kind, flags, form = core[1] >> 4, core[1] & 0x0F, core[2]
    if flags & 0x0C or kind > 7 or form > 4:
        return "ErrMalformed", None
    i, scope = 3, None
    if flags & 0x02:
        err, scope, i = length_prefixed(core, i, 200)
        if err:
            return err, None
        if not SCOPE.match(scope):
            return "ErrMalformed", None
    err, bid, i = length_prefixed(core, i, 4096)
    if err:
        return err, None
    if bid and kind in (0, 6):  # BindNamespace and BindQuery take no id
        return "ErrMalformed", None
    if in_md:
        if i != len(core):
            return "ErrMalformed", None  # bytes after the header
        ct = data
    else:
        hdr, ct = data[:1 + i], data[1 + i:]
    if len(ct) < 33:
        return "ErrTruncated", None
    if ct[0] != 0x01:
        return "ErrMalformed", None
    return "", {"kind": kind, "zstd": bool(flags & 0x01), "form": form, "scope": scope, "id": bid, "header": hdr,
                "layout": "metadata" if in_md else "compact", "ct": ct, "tink_id": struct.unpack(">I", ct[1:5])[0]}

def ad_v2(namespace, key_id, header):
    return field(b"blindfold/v2") + field(namespace.encode()) + field(key_id.encode()) + field(header)

FORMS = {1: b"json/plain", 2: b"binary/null", 3: b"binary/plain", 4: b"json/protobuf"}

def decode_v2(keys, md, data, namespace, expect):
    err, h = parse_header(md, data)
    if err:
        return err, None, None, None
    if expect is not None and (h["kind"], h["id"]) != (expect["kind"], expect["id"].encode()):
        return "ErrWrongBinding", None, None, None  # checked before any key lookup or decryption
    scope = h["scope"].decode() if h["scope"] is not None else default_scope(namespace)
    key_id = "%s/%08x" % (scope, h["tink_id"])
    if h["tink_id"] not in keys or scope not in SCOPES:
        return "ErrUnknownKey", None, None, None
    try:
        pt = tink_decrypt(keys[h["tink_id"]], h["ct"][5:], ad_v2(namespace, key_id, h["header"]))
    except Exception:
        return "ErrTampered", None, None, None
    sealed = pt
    if h["zstd"]:
        if zstandard is None:
            return "", sealed, None, h  # checked up to decryption
        pt = zstandard.ZstdDecompressor().decompressobj().decompress(pt)
    if h["form"] == 0:
        return "", sealed, parse_payload(pt), h
    return "", sealed, ({"encoding": FORMS[h["form"]]}, pt, []), h

def parse_payload(b):
    """Parses the protobuf of temporal.api.common.v1.Payload (metadata map, data, external payload sizes)."""
    def fields(b):
        i = 0
        while i < len(b):
            tag, i = uvarint_any(b, i)
            num, wt = tag >> 3, tag & 7
            if wt == 2:
                n, i = uvarint_any(b, i)
                yield num, b[i:i + n]
                i += n
            elif wt == 0:
                v, i = uvarint_any(b, i)
                yield num, v
            else:
                raise ValueError("unexpected wire type")
    md, data, ext = {}, b"", []
    for num, v in fields(b):
        if num == 1:
            e = dict(fields(v))
            md[e.get(1, b"").decode()] = e.get(2, b"")
        elif num == 2:
            data = v
        elif num == 3:
            ext.append(dict(fields(v)).get(1, 0))
    return md, data, ext

def uvarint_any(b, i):
    n = shift = 0
    while True:
        c = b[i]
        i += 1
        n |= (c & 0x7F) << shift
        if c < 0x80:
            return n, i
        shift += 7

def json_payload(p):
    md = {k: base64.b64decode(v) for k, v in p.get("metadata", {}).items()}
    return md, base64.b64decode(p.get("data", "")), [int(e.get("sizeBytes", 0)) for e in p.get("externalPayloads", [])]

# --- the vectors -----------------------------------------------------------------------------------------------------

def envelope_format(env):
    md = {k: base64.b64decode(v) for k, v in env.get("metadata", {}).items()}
    data = base64.b64decode(env.get("data", ""))
    if md.get("encoding") != b"binary/encrypted":
        return None, md, data
    if "blindfold-format" in md:
        return 1, md, data
    if "blindfold-header" in md or len(data) >= 2 and data[0] == 0xBF and 0x02 <= data[1] <= 0x0F:
        return 2, md, data
    return None, md, data

failures = 0

def report(ok, name, what):
    global failures
    print(("ok  " if ok else "FAIL"), name, what)
    failures += not ok

vf = json.load(open(os.path.join(here, "vectors.json")))
keys = read_keys(vf["keyset"])
for v in vf["vectors"]:
    f, md, data = envelope_format(v["envelope"])
    err, pt = decode_v1(keys, md, data, v["decode_namespace"]) if f == 1 else ("not ours", None)
    ok = err == v.get("error", "")
    if ok and pt is not None:
        ok = pt.hex() == v["plaintext_hex"] and ad_v1(v["key_id"], v["namespace"]).hex() == v["associated_data_hex"]
    report(ok, "v1: " + v["name"], err or "decrypted")

vf = json.load(open(os.path.join(here, "vectors_v2.json")))
keys = read_keys(vf["keyset"])
# The scopes the vectors' key store holds (all with the same keyset): any other scope is an unknown key.
SCOPES = {"default", "orders-prod", "tenant-acme", default_scope("Orders Prod")}
for v in vf["vectors"]:
    f, md, data = envelope_format(v["envelope"])
    payload = None
    if f == 1:
        err, pt = decode_v1(keys, md, data, v["decode_namespace"])
        ad = ad_v1(v["key_id"], v["namespace"]) if not err else None
    elif f == 2:
        err, pt, payload, h = decode_v2(keys, md, data, v["decode_namespace"], v.get("expect_binding"))
        ad = None
        if not err:
            ad = ad_v2(v["namespace"], v["key_id"], bytes.fromhex(v["header_hex"]))
            ok_header = h["header"].hex() == v["header_hex"] and h["layout"] == v["layout"]
    else:
        err, pt = "not ours", None
    ok = err == v.get("error", "")
    what = err or "decrypted"
    if ok and pt is not None:
        ok = pt.hex() == v.get("plaintext_hex", "") and ad.hex() == v["associated_data_hex"]
        if f == 2:
            ok = ok and ok_header
            if payload is not None:
                ok = ok and payload == json_payload(v["payload"])
                what = "decrypted, payload matches (%s layout)" % h["layout"]
            else:
                what = "decrypted (zstd not checked: no zstandard package)"
    report(ok, "v2: " + v["name"], what)
sys.exit(1 if failures else 0)
