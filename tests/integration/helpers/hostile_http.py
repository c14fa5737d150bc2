#!/usr/bin/env python3
"""Hostile HTTP clients against a running edge (and another sh_http server), python3 stdlib only.

    hostile_http.py EDGE_PORT EDGE_PID TOKEN CLIP TRACK_ID TIMEOUT_S OTHER_PORT

EDGE_PORT: an edge started with --api-token-file (TOKEN), --request-timeout TIMEOUT_S and
--max-conns-per-ip $PER_IP (environment; FLOOD: connections of the flood, default 3000); EDGE_PID
its process (RSS from /proc); CLIP: audio that matches TRACK_ID. OTHER_PORT: the replicator's HTTP
port (the same server code, its /health and /metrics). Prints one line per check and the measured
figures; exits 1 on the first failure.
"""
import json
import os
import socket
import sys
import threading
import time

PORT, PID, TOKEN, CLIP, TRACK = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
TMO, OTHER = int(sys.argv[6]), int(sys.argv[7])
PER_IP = int(os.environ.get("PER_IP", "64"))
FLOOD = int(os.environ.get("FLOOD", "3000"))
# libmicrohttpd answers these itself, before any code of ours runs, with a small HTML page that
# cannot be replaced (core/runtime/sh_http.h): a malformed request line or header, headers past
# its memory pool, an unsupported HTTP version, an over-long URI.
MHD_OWN = {400, 413, 414, 431, 505}
clip = open(CLIP, "rb").read()


def fail(msg):
    print("FAIL:", msg, flush=True)
    os._exit(1)


def ok(msg):
    print("ok:", msg, flush=True)


def rss_kib():
    for line in open(f"/proc/{PID}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def conn(port=PORT, src="127.0.0.1", timeout=30):
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


def read_answer(s):
    """Reads one HTTP answer (headers, then Content-Length bytes). Returns (status, headers, body)
    or (None, ...) when the server closed first."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        try:
            c = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            c = b""
        if not c:
            return None, {}, buf
        buf += c
    head, body = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdr = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
    n = int(hdr.get("content-length", "0"))
    while len(body) < n:
        try:
            c = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not c:
            break
        body += c
    return status, hdr, body


def request(raw, port=PORT, src="127.0.0.1", timeout=30):
    s = conn(port, src, timeout)
    try:
        s.sendall(raw)
    except (BrokenPipeError, ConnectionResetError):
        pass
    r = read_answer(s)
    s.close()
    return r


def req(method, path, body=b"", token=TOKEN, extra="", port=PORT, src="127.0.0.1", version="HTTP/1.1"):
    auth = f"Authorization: Bearer {token}\r\n" if token is not None else ""
    head = (f"{method} {path} {version}\r\nHost: t\r\n{auth}{extra}"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return request(head.encode("latin-1") + body, port, src)


def expect_json_error(what, r, statuses):
    status, hdr, body = r
    if status not in statuses:
        fail(f"{what}: status {status}, want one of {sorted(statuses)} ({body[:200]!r})")
    ctype = hdr.get("content-type", "")
    if not ctype.startswith("application/json"):
        fail(f"{what}: {status} with content type {ctype!r}, want JSON ({body[:200]!r})")
    try:
        j = json.loads(body)
    except ValueError:
        fail(f"{what}: body is not JSON: {body[:200]!r}")
    if not isinstance(j, dict) or not isinstance(j.get("error"), str):
        fail(f"{what}: no {{\"error\": ...}}: {body[:200]!r}")


def expect_4xx(what, r, port=PORT):
    """A 4xx; JSON unless it is one of libmicrohttpd's own answers (documented)."""
    status, hdr, body = r
    if status is None:
        fail(f"{what}: closed without an answer")
    if not 400 <= status < 500 and status != 505:
        fail(f"{what}: status {status}")
    if hdr.get("content-type", "").startswith("application/json"):
        expect_json_error(what, r, {status})
        return "json"
    if status not in MHD_OWN:
        fail(f"{what}: {status} not JSON ({hdr.get('content-type')!r}) and not libmicrohttpd's own")
    return "mhd-html"


def match_ok(src="127.0.0.1", what="a normal match"):
    st, hdr, body = req("POST", "/v1/match", clip, src=src)
    if st != 200:
        fail(f"{what}: status {st} {body[:200]!r}")
    j = json.loads(body)
    if not j.get("match") or j["match"]["track_id"] != TRACK:
        fail(f"{what}: wrong answer {body[:300]!r}")


def alive():
    st, _, _ = req("GET", "/health", token=None)
    if st != 200:
        fail(f"/health answered {st}")


# ---- tokens, methods, hashes, paths --------------------------------------------------------------
match_ok()
ok("a normal match request is answered with its track")
for what, tok, extra in [("missing token", None, ""), ("wrong token", TOKEN + "x", ""),
                         ("empty token", "", ""), ("token prefix", TOKEN[:-1], ""),
                         ("basic scheme", None, f"Authorization: Basic {TOKEN}\r\n")]:
    expect_json_error(what, req("POST", "/v1/match", clip, token=tok, extra=extra), {401})
    expect_json_error(what + " (/v1/shards)", req("GET", "/v1/shards", token=tok, extra=extra), {401})
ok("missing, wrong, empty, prefix and Basic tokens: 401 JSON")
for m in ["PUT", "DELETE", "PATCH", "GET"]:
    expect_json_error(f"{m} /v1/match", req(m, "/v1/match"), {405})
for m in ["POST", "PUT", "DELETE"]:
    expect_json_error(f"{m} /health", req(m, "/health"), {405})
kinds = {}
for m in ["OPTIONS", "TRACE", "CONNECT", "FOO", "get"]:
    kinds[m] = expect_4xx(f"method {m}", req(m, "/v1/match"))
ok(f"wrong methods: 405 JSON; others {kinds}")
hashes = [
    ("not JSON", b"{nope", "application/json"),
    ("JSON array", b"[1,2,3]", "application/json"),
    ("no hashes", b'{"fp_version":2}', "application/json"),
    ("wrong version", b'{"fp_version":99,"hashes":[[1,2]]}', "application/json"),
    ("negative version", b'{"fp_version":-1,"hashes":[[1,2]]}', "application/json"),
    ("hash not a pair", b'{"fp_version":2,"hashes":[[1]]}', "application/json"),
    ("huge numbers", b'{"fp_version":2,"hashes":[[1e300,99999999999999999999]]}', "application/json"),
    ("deep nesting", b"[" * 100000 + b"]" * 100000, "application/json"),
    ("binary truncated", b"SHQ1\x02", "application/x-soundhash-hashes"),
    ("binary wrong version", b"SHQ1" + bytes([99, 0, 0, 0]) + b"\x01\x00\x00\x00" + b"\x00" * 8,
     "application/x-soundhash-hashes"),
    ("binary garbage", os.urandom(4096), "application/x-soundhash-hashes"),
    ("audio garbage", os.urandom(65536), "application/octet-stream"),
]
for what, body, ct in hashes:
    expect_json_error(what, req("POST", "/v1/match", body, extra=f"Content-Type: {ct}\r\n"),
                      {400, 413, 415, 422})
alive()
ok(f"{len(hashes)} malformed, wrong-version and garbage bodies: 4xx JSON, node alive")
paths = ["/v1/../v1/match", "/v1/%2e%2e/v1/match", "/v1/%2E%2E/health", "//v1/match", "/v1//match",
         "/v1/match/", "/v1/match%00", "/v1/match%00.json", "/health%00", "/health/..", "/%2fhealth",
         "/v1/match?x=%00", "/V1/MATCH", "/v1/match;x", "/v1/match%20", "*", "/" + "a" * 8000]
forms = {}
for p in paths:
    r = req("POST", p, clip) if p.startswith("/v1") else req("GET", p)
    if p == "/v1/match?x=%00":  # a query argument nobody reads: the match is served
        if r[0] != 200:
            fail(f"{p}: {r[0]}")
        continue
    forms[p[:24]] = expect_4xx(f"path {p[:40]}", r)
    if forms[p[:24]] == "json" and r[0] not in (404, 405):
        fail(f"path {p[:40]}: {r[0]}, want 404/405")
# raw bytes libmicrohttpd parses before us
raws = {
    "HTTP/2.0": b"GET /health HTTP/2.0\r\nHost: t\r\n\r\n",
    "no version": b"GET /health\r\n\r\n",
    "100 KiB URI": b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\nHost: t\r\n\r\n",
    "64 KiB header": b"GET /health HTTP/1.1\r\nHost: t\r\nX-Big: " + b"b" * 65536 + b"\r\n\r\n",
    "header without colon": b"GET /health HTTP/1.1\r\nHost: t\r\nnocolon\r\n\r\n",
    "bad content length": b"POST /v1/match HTTP/1.1\r\nHost: t\r\nContent-Length: -5\r\n\r\n",
    "two content lengths": b"POST /v1/match HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
    "CL and chunked": b"POST /v1/match HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
}
for what, raw in raws.items():
    r = request(raw)
    if r[0] is None:  # closed without an answer: acceptable for garbage, the node must live
        forms[what] = "closed"
    else:
        forms[what] = expect_4xx(what, r) if r[0] >= 400 else f"{r[0]}"
        if r[0] < 400 and r[0] != 401:
            fail(f"{what}: {r[0]}")
# HTTP/1.x with x > 1 is served as HTTP/1.1 (RFC 9112 2.3: a later minor version is compatible)
if request(b"GET /health HTTP/1.7\r\nHost: t\r\n\r\n")[0] != 200:
    fail("HTTP/1.7 is not served as 1.1")
# A raw NUL byte in the request line ends the path there (libmicrohttpd hands over C strings):
# the request is the one the bytes before the NUL name, with that request's answer — no route or
# token check is skipped (documented in core/runtime/sh_http.h).
r = request(b"GET /health\x00/../v1/shards HTTP/1.1\r\nHost: t\r\n\r\n")
if r[0] != 200:
    fail(f"raw NUL after /health: {r[0]}")
expect_json_error("raw NUL after /v1/shards, no token",
                  request(b"GET /v1/shards\x00x HTTP/1.1\r\nHost: t\r\n\r\n"), {401})
forms["raw NUL"] = "prefix path"
alive()
print("path tricks and raw oddities:", json.dumps(forms, sort_keys=True))
ok("path tricks: 404/405 JSON (or libmicrohttpd's own 4xx/505, listed), node alive")

# ---- 100 MiB bodies: refused early, bounded memory -------------------------------------------------
rss0 = rss_kib()
t0 = time.time()
s = conn()
s.sendall(b"POST /v1/match HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " + TOKEN.encode()
          + b"\r\nContent-Length: 104857600\r\n\r\n")
r = read_answer(s)  # before any byte of the body
s.close()
expect_json_error("declared 100 MiB", r, {413})
t_declared = time.time() - t0
# the same, streamed chunked (no length to refuse up front): discarded as it arrives
t0 = time.time()
s = conn(timeout=120)
s.sendall(b"POST /v1/match HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " + TOKEN.encode()
          + b"\r\nTransfer-Encoding: chunked\r\n\r\n")
chunk = b"%x\r\n" % (1 << 20) + b"z" * (1 << 20) + b"\r\n"
sent = 0
try:
    for _ in range(100):
        s.sendall(chunk)
        sent += 1
    s.sendall(b"0\r\n\r\n")
    r = read_answer(s)
except (BrokenPipeError, ConnectionResetError):
    r = (None, {}, b"")
s.close()
t_chunked = time.time() - t0
if r[0] is not None:
    expect_json_error("chunked 100 MiB", r, {413})
rss1 = rss_kib()
print(f"100 MiB bodies: declared refused in {t_declared*1000:.0f} ms; chunked {sent} MiB sent, "
      f"answer {r[0]} after {t_chunked:.1f} s; edge RSS {rss0} KiB -> {rss1} KiB "
      f"(+{(rss1 - rss0) // 1024} MiB)")
if t_declared > 5:
    fail("a declared 100 MiB body is not refused at once")
if rss1 - rss0 > 32 * 1024:
    fail(f"RSS grew {(rss1 - rss0) // 1024} MiB over two 100 MiB bodies")
alive()
ok("100 MiB bodies refused (413 JSON), RSS bounded")

# ---- slowloris: trickled headers and bodies -----------------------------------------------------
def trickle(kind, results, i):
    try:
        s = conn(timeout=TMO * 4 + 20)
        if kind == "headers":
            s.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n")
        else:
            s.sendall(b"POST /v1/match HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n")
        t0 = time.time()
        got = b""
        s.setblocking(False)
        while time.time() - t0 < TMO * 4 + 15:
            try:
                s.send(b"X-A: b\r\n"[:1] if kind == "headers" else b"z")
            except (BrokenPipeError, ConnectionResetError, BlockingIOError):
                pass
            try:
                c = s.recv(4096)
                if not c:
                    break
                got += c
            except BlockingIOError:
                pass
            except (ConnectionResetError, OSError):
                break
            time.sleep(0.5)
        results[i] = (time.time() - t0, got)
        s.close()
    except OSError as e:
        results[i] = (-1, repr(e).encode())


for kind in ("headers", "body"):
    n = 20
    res = [None] * n
    th = [threading.Thread(target=trickle, args=(kind, res, i)) for i in range(n)]
    for t in th:
        t.start()
    time.sleep(1.5)
    match_ok(what=f"a match during {n} {kind} trickles")
    for t in th:
        t.join()
    worst = max(r[0] for r in res)
    if min(r[0] for r in res) < 0:
        fail(f"{kind} trickle: {res}")
    if worst > TMO * 2 + 3:
        fail(f"{kind} trickle held {worst:.1f} s against a {TMO} s limit")
    if kind == "headers":
        for d, got in res:
            if b" 408 " not in got.split(b"\r\n", 1)[0] or b'{"error":"request headers too slow"}' not in got:
                fail(f"slow headers: no 408 JSON answer: {got[:200]!r}")
    print(f"{n} trickled {kind}: cut after {min(r[0] for r in res):.1f}-{worst:.1f} s (limit {TMO} s)")
ok("trickled headers (408 JSON) and bodies are cut within the limit while matches are served")

# ---- a flood of connections from one address -------------------------------------------------------
def open_flood(n, src):
    socks, refused = [], 0
    for _ in range(n):
        try:
            s = socket.socket()
            s.bind((src, 0))
            s.settimeout(5)
            s.connect(("127.0.0.1", PORT))
            s.sendall(b"GET /hea")  # half a request line: the connection waits for its headers
            socks.append(s)
        except OSError:
            refused += 1
    return socks, refused


rss0 = rss_kib()
t0 = time.time()
socks, refused = open_flood(FLOOD, "127.0.0.1")
time.sleep(1)
# the server closes what is past the per-address cap at once: readable EOF (or reset)
closed = 0
for s in socks:
    s.setblocking(False)
    try:
        if s.recv(1) == b"":
            closed += 1
    except BlockingIOError:
        pass
    except OSError:
        closed += 1
held = len(socks) - closed
t_open = time.time() - t0
rss1 = rss_kib()
match_ok(src="127.0.0.2", what="a match from another address during the flood")
st, _, _ = req("GET", "/health", token=None, src="127.0.0.3")
if st != 200:
    fail(f"/health from another address during the flood: {st}")
print(f"flood: {FLOOD} connections from 127.0.0.1 in {t_open:.1f} s: {held} held, "
      f"{closed} closed at once, {refused} refused; edge RSS {rss0} -> {rss1} KiB")
if held > PER_IP:
    fail(f"{held} connections held from one address, over the cap {PER_IP}")
if held < PER_IP // 2:
    fail(f"only {held} of the cap {PER_IP} held: the flood did not reach the server")
for s in socks:
    s.close()
ok(f"{FLOOD} connections from one address: at most {PER_IP} held, other clients served")

# ---- the other server (replicator): the same code, its own routes ----------------------------------
# its errors are plain text (json_errors off: an internal server), never HTML
for m, p, want in [("GET", "/health%00", 404), ("GET", "/%2e%2e/health", 404),
                   ("GET", "//health", 404), ("GET", "/nope", 404), ("PUT", "/health", 405)]:
    st, hdr, body = req(m, p, token=None, port=OTHER)
    if st != want or not hdr.get("content-type", "").startswith("text/plain"):
        fail(f"other server {m} {p}: {st} {hdr.get('content-type')!r}, want {want} text/plain")
s = conn(OTHER, timeout=TMO * 4 + 30)
s.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n")
t0 = time.time()
s.setblocking(False)
cut = None
while time.time() - t0 < 40:
    try:
        s.send(b"X")
    except OSError:
        pass
    try:
        c = s.recv(4096)
        if not c or b" 408 " in c:
            cut = time.time() - t0
            break
    except BlockingIOError:
        pass
    except OSError:
        cut = time.time() - t0
        break
    time.sleep(0.5)
s.close()
if cut is None:
    fail("the replicator's server kept a header trickle 40 s")
print(f"replicator: path tricks 4xx, a header trickle cut after {cut:.1f} s")
st, _, _ = req("GET", "/health", token=None, port=OTHER)
if st not in (200, 503):
    fail(f"replicator /health: {st}")
ok("the replicator's server: path tricks 4xx, header trickle cut, still answering")
alive()
match_ok(what="a match after everything")
ok("a match after everything")
