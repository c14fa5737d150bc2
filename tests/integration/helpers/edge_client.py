#!/usr/bin/env python3
"""edge_client.py — a client hammering an edge while its shards change under it.

    edge_client.py PORT CLIPS STOP OUT [SUMS]

Rounds until the file STOP exists: every clip of CLIPS (lines "TRACK_ID PATH") is POSTed to
/v1/match, each followed by a GET /v1/shards. After each round the number of rounds done is written
to OUT.rounds. At the end OUT gets one JSON summary:
  answers, wrong (answers naming another track or none: [track, status, got]), errors (non-200s),
  shard_reads, mixed_reads (reads where some shard listed two or more fp_versions),
  versions_seen (every fp_version any shard listed), not_loaded (shard entries with loaded false),
  partial (200 answers that did not consult every held shard, or said complete false: a shard
  missing while it is swapped), back (shard reads whose (epoch, position) is below the previous
  read's of the same shard: a node going back in time),
  and with SUMS (lines of `repl_tool sums`, a primary that does not change meanwhile):
  bad_sums (shard entries whose checksum differs from the primary's: [shard, epoch, position, sum]).
  Lists keep their first 20 entries; nwrong, nerrors, nbad_sums and nback count them all.
Exit 0; the test judges the summary.
"""
import json
import os
import sys
import urllib.error
import urllib.request


def request(url, body=None):
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        return 0, str(e).encode()


def main():
    port, clips_file, stop, out = sys.argv[1:5]
    sums = {}
    if len(sys.argv) > 5:
        for line in open(sys.argv[5]):
            s = json.loads(line)
            sums[s["shard"]] = (s["sum"], s["tracks"], s["postings"])
    base = "http://127.0.0.1:%s" % port
    clips = []
    for line in open(clips_file):
        tid, path = line.split()
        clips.append((tid, open(path, "rb").read()))
    st = {"answers": 0, "wrong": [], "errors": [], "shard_reads": 0, "mixed_reads": 0,
          "versions_seen": [], "not_loaded": 0, "bad_sums": [], "rounds": 0, "partial": 0,
          "back": []}
    seen = set()
    held = None  # shard numbers, from the first /v1/shards read
    last = {}  # shard -> (epoch, position) of the previous read
    while not os.path.exists(stop):
        for tid, body in clips:
            code, data = request(base + "/v1/match", body)
            st["answers"] += 1
            got = None
            if code == 200:
                a = json.loads(data)
                m = a.get("match")
                got = m["track_id"] if m else None
                consulted = {c["shard"] for c in a.get("shards", [])}
                st["partial"] += (held is not None and not held <= consulted) or \
                    a.get("complete") is False
            else:
                st["errors"].append(["match", code, data[:200].decode(errors="replace")])
            if got != tid:
                st["wrong"].append([tid, code, got])
            code, data = request(base + "/v1/shards")
            st["shard_reads"] += 1
            if code != 200:
                st["errors"].append(["shards", code, data[:200].decode(errors="replace")])
                continue
            shards = json.loads(data)["shards"]
            if held is None:
                held = {s["shard"] for s in shards}
            st["mixed_reads"] += any(len(s["fp_versions"]) >= 2 for s in shards)
            for s in shards:
                now = (s["epoch"], s["position"])
                if now < last.get(s["shard"], now):
                    st["back"].append([s["shard"], last[s["shard"]], now])
                last[s["shard"]] = now
                seen.update(s["fp_versions"])
                st["not_loaded"] += not s["loaded"]
                c = s["checksum"]
                if sums and (c["sum"], c["tracks"], c["postings"]) != sums[s["shard"]]:
                    st["bad_sums"].append([s["shard"], s["epoch"], s["position"], c["sum"]])
        st["rounds"] += 1
        with open(out + ".rounds.tmp", "w") as f:
            f.write(str(st["rounds"]))
        os.rename(out + ".rounds.tmp", out + ".rounds")
    st["versions_seen"] = sorted(seen)
    for k in ("wrong", "errors", "bad_sums", "back"):
        st["n" + k] = len(st[k])
        st[k] = st[k][:20]
    with open(out, "w") as f:
        json.dump(st, f)


if __name__ == "__main__":
    main()
