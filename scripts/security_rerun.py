#!/usr/bin/env python3
# Usage: scripts/security_rerun.py http://127.0.0.1:PORT NON_EDITOR_TOKEN  (a server on loopback with the sample collection)
# ruff: noqa: E501
"""Re-run of the security review's reproductions (round 2) against a live iiifsrv on 127.0.0.1.
Prints one line per finding: the attack, what came back, and PASS (attack failed) or FAIL."""

import base64
import json
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

B = sys.argv[1]
host, port = B.split("//")[1].split(":")
port = int(port)
TOK_BOB = sys.argv[2]
out = []


def raw(req: bytes, src="127.0.0.1") -> bytes:
    s = socket.create_connection((host, port), source_address=(src, 0))
    s.sendall(req)
    data = b""
    while True:
        c = s.recv(65536)
        if not c:
            break
        data += c
    s.close()
    return data


def get(path, headers=None, method="GET", body=None):
    r = urllib.request.Request(B + path, headers=headers or {}, method=method, data=body)
    try:
        with urllib.request.urlopen(r, timeout=30) as f:
            return f.status, {k.lower(): v for k, v in f.headers.items()}, f.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def report(name, ok, detail):
    out.append(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")


# 2. duplicate Host poisoning
r = raw(
    b"GET /iiif/2/palimpsest%%2FIR850/info.json HTTP/1.1\r\nHost: evil.example\r\nHost: %s\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    % f"{host}:{port}".encode()
)
st, _, body = get("/iiif/2/palimpsest%2FIR850/info.json", {"Accept": "*/*"})
report(
    "#2 duplicate Host",
    b"evil.example" not in body,
    f"attack -> {r.split(b' ')[1].decode()}, clean request @id = {json.loads(body).get('@id')}",
)
# 3. X-Forwarded-Proto
get("/iiif/2/jpeg2000/info.json", {"X-Forwarded-Proto": "ws", "Accept": "*/*"})
st, _, body = get("/iiif/2/jpeg2000/info.json", {"Accept": "*/*"})
report(
    "#3 X-Forwarded-Proto: ws",
    not json.loads(body)["@id"].startswith("ws:"),
    f"clean @id = {json.loads(body)['@id']}",
)
# 5. slowloris: 300 partial connections from 127.0.0.2, then /health from 127.0.0.1
socks = []
refused = 0
for _ in range(300):
    try:
        s = socket.create_connection((host, port), source_address=("127.0.0.2", 0), timeout=2)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        socks.append(s)
    except OSError:
        refused += 1
t = time.monotonic()
st, _, _ = get("/health")
dt = time.monotonic() - t
closed = 0
for s in socks:
    s.settimeout(0.05)
    try:
        if s.recv(1) == b"":
            closed += 1
    except (TimeoutError, OSError):
        pass
for s in socks:
    s.close()
report(
    "#5 slowloris (300 partial conns)",
    st == 200 and dt < 1,
    f"/health {st} in {dt * 1000:.0f} ms; {closed} of 300 attacker sockets already closed by the server (per-client cap)",
)
# 6. NaN in Annotot data
C = None
st, _, coll = get("/iiif/collection")
coll = json.loads(coll)
m = json.loads(get(urllib.parse.urlsplit(coll["items"][0]["id"]).path)[2])
C = m["items"][0]["id"]
data = json.dumps({"type": "Annotation", "body": {"value": "hi"}, "target": C}).replace(
    '"hi"}', '"hi","x":NaN}'
)
st, _, b = get(
    "/annotot",
    {"Authorization": f"Bearer {TOK_BOB}", "Content-Type": "application/json"},
    "POST",
    json.dumps({"annotation": {"canvas": C, "uuid": "urn:nan", "data": data}}).encode(),
)
report("#6 NaN in Annotot data", st == 400, f"POST -> {st} {b[:60]!r}")
# 8. squatting a catalogue id / a canvas URL
st1, _, b1 = get(
    "/iiif/manifests/palimpsest",
    {"Authorization": f"Bearer {TOK_BOB}", "Content-Type": "application/json"},
    "PUT",
    json.dumps(m).encode(),
)
st2, _, b2 = get(
    "/iiif/manifests/flat/canvas/1",
    {"Authorization": f"Bearer {TOK_BOB}", "Content-Type": "application/json"},
    "PUT",
    json.dumps(m).encode(),
)
report(
    "#8 squatting",
    st1 in (403, 409) and st2 in (403, 409),
    f"PUT catalogue id -> {st1} {b1.strip()[:50]!r}; PUT flat/canvas/1 -> {st2} {b2.strip()[:50]!r}",
)
# 11. manifest scope http:
seg = base64.urlsafe_b64encode(b"http:").decode().rstrip("=")
st, _, b = get(f"/annotations/manifest/{seg}/page")
report("#11 dump via scope 'http:'", st == 404, f"-> {st}, {len(b)} bytes")
# 14/15 disclosure
st, _, b = get("/objects/palimpsest")
src = json.loads(b).get("source", "")
report("#14 /objects source path", "/" not in str(src), f"source = {src!r}")
st, _, b = get("/health")
report("#15 version banner", b"version" not in b, f"/health -> {b.strip()!r}")
st, _, b = get("/iiif/3/.private%2Fx/info.json")
report("#15 dot-folder", st == 404, f"-> {st} {b.strip()!r}")
st, h, b = get("/iiif/3/flat/info.json")
report(
    "#15 nosniff",
    h.get("x-content-type-options") == "nosniff",
    f"X-Content-Type-Options = {h.get('x-content-type-options')}",
)
st, h, b = get("/viewer/uv?manifest=" + urllib.parse.quote("http://127.0.0.1:1/m.json", safe=""))
csp = h.get("content-security-policy", "")
report(
    "#1 CSP on /viewer/uv",
    "script-src 'self'" in csp and b"UV.init" not in b,
    f"CSP = {csp[:90]}…; inline UV.init in page: {b'UV.init' in b}",
)
# 7. token guessing
codes = set()
for i in range(30):
    st, _, _ = get(f"/annotot/key/guess{i:04d}xxxxxxxxxxxxxxxx/nonexistent", method="DELETE")
    codes.add(st)
report(
    "#7 token guessing (30 wrong tokens)",
    429 in codes and 404 not in codes,
    f"statuses seen: {sorted(codes)}",
)
print("\n".join(out))
