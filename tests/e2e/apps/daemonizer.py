"""An HTTP test app that leaves a daemon behind: fork, setsid, fork.

The daemon keeps the app's stdout and stderr open and sleeps forever; it
writes its pid to ``$DAEMON_PIDFILE``.  The app itself serves ``200`` on
``$PORT``.
"""

from __future__ import annotations

import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"daemonizer\n"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


def leave_a_daemon() -> None:
    if os.fork() != 0:
        os.wait()
        return
    os.setsid()
    if os.fork() != 0:
        os._exit(0)
    with open(os.environ["DAEMON_PIDFILE"], "w") as handle:
        handle.write(f"{os.getpid()}\n")
    print("daemon running", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    leave_a_daemon()
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    server.daemon_threads = True
    print("daemonizer listening", flush=True)
    server.serve_forever()
