"""An HTTP test app that takes its time to stop.

On SIGTERM it appends ``<instance> term <epoch>`` to ``$STUBBORN_MARKER``, keeps serving for
``$STUBBORN_EXIT_AFTER`` seconds, then appends ``<instance> clean exit <epoch>`` and exits 0; with
``STUBBORN_EXIT_AFTER`` unset it never exits on its own (only SIGKILL stops it).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"stubborn\n"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


def note(text: str) -> None:
    marker = os.environ.get("STUBBORN_MARKER")
    if marker:
        with open(marker, "a") as handle:
            handle.write(f"{os.environ.get('MESHKIT_INSTANCE')} {text} {time.time():.3f}\n")


def on_term(signum: int, frame: object) -> None:
    note("term")
    exit_after = os.environ.get("STUBBORN_EXIT_AFTER")
    if exit_after is None:
        return

    def leave() -> None:
        time.sleep(float(exit_after))
        note("clean exit")
        os._exit(0)

    threading.Thread(target=leave, daemon=True).start()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_term)
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    server.daemon_threads = True
    print("stubborn app listening", flush=True)
    server.serve_forever()
