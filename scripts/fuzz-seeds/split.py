"""Turns recorded HS2 streams (capture.py) into fuzz seeds under fuzz/seeds/<target>/peer-*.

Cuts each stream by its transport (unframed, SASL then frames, HTTP/1.1) into Thrift messages with a
binary-protocol skipper of its own (not the proxy's scanner), and writes: each message (scanner_splits,
and each call for request_parse), the first bytes of each connection (sniff), SASL negotiations (sasl),
framed payload streams (deframer), Authorization and cookie headers (http_auth). Deduplicated by content;
at most a few per method and direction.

Usage: python split.py RECORDINGS_DIR FUZZ_DIR"""

import hashlib
import os
import re
import struct
import sys

MAX_MESSAGE = 64 * 1024
PER_KIND = 3
FIXED = {2: 1, 3: 1, 4: 8, 6: 2, 8: 4, 10: 8}


class Short(Exception):
    pass


def skip(buf, pos, t, depth=0):
    """The position after one value of type t at pos (raises Short when buf ends first)."""
    if depth > 64:
        raise ValueError("too deep")
    if t in FIXED:
        end = pos + FIXED[t]
    elif t == 11:
        (n,) = struct.unpack_from(">i", need(buf, pos, 4))
        if n < 0:
            raise ValueError("negative length")
        end = pos + 4 + n
    elif t == 12:
        while True:
            ft = need(buf, pos, 1)[0]
            if ft == 0:
                return pos + 1
            need(buf, pos, 3)
            pos = skip(buf, pos + 3, ft, depth + 1)
    elif t in (14, 15):
        et, n = struct.unpack_from(">bi", need(buf, pos, 5))
        pos += 5
        for _ in range(n):
            pos = skip(buf, pos, et, depth + 1)
        return pos
    elif t == 13:
        kt, vt, n = struct.unpack_from(">bbi", need(buf, pos, 6))
        pos += 6
        for _ in range(n):
            pos = skip(buf, skip(buf, pos, kt, depth + 1), vt, depth + 1)
        return pos
    else:
        raise ValueError(f"type {t}")
    if end > len(buf):
        raise Short()
    return end


def need(buf, pos, n):
    if pos + n > len(buf):
        raise Short()
    return buf[pos:pos + n]


def messages(stream):
    """Whole strict binary-protocol messages at the front of stream, one after another."""
    pos, out = 0, []
    while pos + 8 <= len(stream) and stream[pos:pos + 2] == b"\x80\x01":
        try:
            (n,) = struct.unpack_from(">i", stream, pos + 4)
            name = stream[pos + 8:pos + 8 + n].decode()
            end = skip(stream, pos + 12 + n, 12)
        except (Short, ValueError, UnicodeDecodeError, struct.error):
            break
        out.append((name, stream[pos + 1 + 2], stream[pos:end]))
        pos = end
    return out


def sasl_split(stream):
    """(negotiation bytes, the framed data after it)."""
    pos = 0
    while pos + 5 <= len(stream) and 1 <= stream[pos] <= 5:
        (n,) = struct.unpack_from(">I", stream, pos + 1)
        pos += 5 + n
    return stream[:pos], stream[pos:]


def deframe(data):
    out, pos = bytearray(), 0
    while pos + 4 <= len(data):
        (n,) = struct.unpack_from(">I", data, pos)
        out += data[pos + 4:pos + 4 + n]
        pos += 4 + n
    return bytes(out)


def http_parts(stream):
    """(headers dict list, bodies) of each HTTP/1.1 message in stream (Content-Length or chunked)."""
    pos, out = 0, []
    while True:
        end = stream.find(b"\r\n\r\n", pos)
        if end < 0:
            return out
        head = stream[pos:end].decode("latin-1").split("\r\n")
        headers = [tuple(h.split(":", 1)) for h in head[1:] if ":" in h]
        hmap = {k.strip().lower(): v.strip() for k, v in headers}
        body, pos = b"", end + 4
        if hmap.get("transfer-encoding", "").lower() == "chunked":
            while True:
                line_end = stream.find(b"\r\n", pos)
                if line_end < 0:
                    return out
                size = int(stream[pos:line_end].split(b";")[0] or b"0", 16)
                body += stream[line_end + 2:line_end + 2 + size]
                pos = line_end + 2 + size + 2
                if size == 0:
                    break
        else:
            n = int(hmap.get("content-length", "0"))
            body, pos = stream[pos:pos + n], pos + n
        out.append((headers, body))


class Seeds:
    def __init__(self, fuzz_dir):
        self.fuzz_dir, self.seen, self.kinds = fuzz_dir, set(), {}

    def add(self, target, name, data, kind=None):
        key = (target, kind or name)
        if self.kinds.get(key, 0) >= PER_KIND or (target, data) in self.seen:
            return
        self.kinds[key] = self.kinds.get(key, 0) + 1
        self.seen.add((target, data))
        d = os.path.join(self.fuzz_dir, "seeds", target)
        os.makedirs(d, exist_ok=True)
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        with open(os.path.join(d, f"peer-{safe}-{hashlib.sha1(data).hexdigest()[:8]}"), "wb") as f:
            f.write(data)

    def thrift(self, label, side, payload, peer_label):
        for name, _, msg in messages(payload):
            if len(msg) > MAX_MESSAGE:
                continue
            tag, kind = f"{label}-{side}-{name}", f"{peer_label}-{side}-{name}"
            self.add("value_roundtrip", tag, msg, kind)
            if side == "c2s":
                self.add("request_parse", tag, msg, kind)
                self.add("scanner_splits", tag, bytes([0, 0x46, len(msg) & 0xFF, 3]) + msg, kind)
            else:
                self.add("scanner_splits", tag, bytes([1, 0x70, len(msg) & 0xFF, 0]) + msg, kind)


def one_connection(seeds, label, side, stream, peer_label):
    if not stream:
        return
    if side == "c2s":
        seeds.add("sniff", f"{label}", stream[:64], kind=f"{peer_label}-{stream[:1].hex()}")
    if stream[:2] == b"\x80\x01":
        seeds.thrift(label, side, stream, peer_label)
    elif 1 <= stream[0] <= 5:
        nego, data = sasl_split(stream)
        seeds.add("sasl", f"{label}-{side}", bytes([3, len(nego) & 0xFF, 0]) + nego, kind=f"{peer_label}-{side}")
        if data:
            seeds.add("deframer", f"{label}-{side}", bytes([10, len(data) & 0xFF, 1]) + data[:16384],
                      kind=f"{peer_label}-{side}")
            seeds.thrift(label, side, deframe(data), peer_label)
    elif stream[:4] in (b"POST", b"HTTP"):
        for headers, body in http_parts(stream):
            for k, v in headers:
                k, v = k.strip().lower(), v.strip().encode()
                if k == "authorization":
                    seeds.add("http_auth", f"{label}-authorization", b"\x00" + v, kind=peer_label)
                elif k in ("cookie", "set-cookie"):
                    seeds.add("http_auth", f"{label}-{k}", b"\x02alice\xff" + v.split(b";")[0], kind=f"{peer_label}-{k}")
            seeds.thrift(label, side, body, peer_label)


def main():
    rec_dir, fuzz_dir = sys.argv[1], sys.argv[2]
    seeds = Seeds(fuzz_dir)
    for f in sorted(os.listdir(rec_dir)):
        m = re.match(r"(.+)-(\d+)-(c2s|s2c)\.bin$", f)
        if not m:
            continue
        with open(os.path.join(rec_dir, f), "rb") as fh:
            one_connection(seeds, f"{m[1]}-{m[2]}", m[3], fh.read(), m[1])
    counts = {}
    for target, _ in seeds.seen:
        counts[target] = counts.get(target, 0) + 1
    print("split: seeds", " ".join(f"{t}={n}" for t, n in sorted(counts.items())))


if __name__ == "__main__":
    main()
