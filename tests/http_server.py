#!/usr/bin/python3
"""Loopback HTTP server for tests/cli_download.sh (test tool only).

    /usr/bin/python3 http_server.py --dir DIR --port-file F --log LOG

Serves the files of DIR on 127.0.0.1 (a free port, written to F) with these URL forms:
    /<file>                 the file; honours "Range: bytes=S-" (206 + Content-Range; 416 when
                            S is past the end)
    /cut/<N>/<file>         announces the whole length, sends N bytes, then drops the connection
    /wrong/<file>           same length, different bytes (every byte XOR 0x5a)
    anything else           404
Every request is logged to LOG as one line: METHOD PATH range=<Range header or -> status bytes.
"""
import argparse
import http.server
import os
import re
import socketserver
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # the request log is written by log_req instead
        pass

    def log_req(self, status, nbytes):
        with open(self.server.log_path, "a") as f:
            f.write(f"{self.command} {self.path} range={self.headers.get('Range') or '-'} {status} {nbytes}\n")

    def send_plain(self, status, text):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.log_req(status, len(body))

    def do_GET(self):
        path = self.path.split("?")[0]
        cut, wrong = None, False
        m = re.match(r"^/cut/(\d+)(/.*)$", path)
        if m:
            cut, path = int(m.group(1)), m.group(2)
        elif path.startswith("/wrong/"):
            wrong, path = True, path[len("/wrong"):]
        name = path.lstrip("/")
        full = os.path.join(self.server.root, name)
        if not name or "/" in name or name.startswith(".") or not os.path.isfile(full):
            return self.send_plain(404, "not found\n")
        with open(full, "rb") as f:
            data = f.read()
        if wrong:
            data = bytes(b ^ 0x5A for b in data)
        start = 0
        rng = self.headers.get("Range")
        if rng:
            m = re.match(r"^bytes=(\d+)-$", rng.strip())
            if not m:
                return self.send_plain(400, "bad range\n")
            start = int(m.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return self.log_req(416, 0)
        body = data[start:]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if cut is not None and cut < len(body):
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.log_req(206 if rng else 200, cut)
            self.close_connection = True
            self.connection.shutdown(2)
            return
        step = 1 << 20
        for i in range(0, len(body), step):
            self.wfile.write(body[i:i + step])
        self.log_req(206 if rng else 200, len(body))


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    a = ap.parse_args()
    srv = Server(("127.0.0.1", 0), Handler)
    srv.root = os.path.abspath(a.dir)
    srv.log_path = a.log
    open(a.log, "w").close()
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.replace(tmp, a.port_file)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
