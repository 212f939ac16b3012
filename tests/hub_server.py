"""A stand-in for the Hugging Face Hub on 127.0.0.1, for tests of what happens when it misbehaves."""

from __future__ import annotations

import http.server
import threading


class HangingHub(http.server.ThreadingHTTPServer):
    """Answers the probe; every download waits (up to 60 s), as a hub behind a dying network would."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.downloads = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(handler) -> None:
                if handler.path.startswith("/api/models"):
                    handler.send_response(200)
                    handler.end_headers()
                    return
                self.downloads += 1
                self.release.wait(60)
                handler.send_response(504)
                handler.end_headers()

            do_HEAD = do_GET = _answer

            def log_message(handler, *args) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.daemon_threads = True
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()
