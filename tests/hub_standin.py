"""A local stand-in for the few Hugging Face Hub endpoints a push uses, so tests never touch the
network: create a repo, ask how to upload each file (every file 'regular': inline in the commit),
the commit itself (NDJSON, base64 contents), and the check of the model card's YAML header. It
checks the bearer token on every call."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml


class HubStandIn:
    def __init__(self, storage: Path, token: str):
        self.storage, self.token = storage, token
        self.repos: dict[str, dict] = {}  # repo id -> {"private": bool}
        self.commits: list[dict] = []
        self.card_metadata: list[dict] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Authorization") != f"Bearer {hub.token}":
                    return self.reply(401, {"error": "Invalid credentials in Authorization header"})
                parts = self.path.split("?")[0].strip("/").split("/")
                if parts[:3] == ["api", "repos", "create"]:
                    data = json.loads(body)
                    repo = f"{data['organization']}/{data['name']}" if data.get("organization") else data["name"]
                    hub.repos[repo] = {"private": data.get("visibility") == "private" or bool(data.get("private"))}
                    return self.reply(200, {"url": f"{hub.url}/{repo}", "name": repo})
                if parts == ["api", "validate-yaml"]:  # the model card's metadata header must be YAML
                    content = json.loads(body)["content"]
                    try:
                        hub.card_metadata.append(yaml.safe_load(content.split("---")[1]))
                    except (IndexError, yaml.YAMLError) as exc:
                        return self.reply(400, {"error": f"Invalid metadata in README.md: {exc}"})
                    return self.reply(200, {"warnings": []})
                if parts[:2] == ["api", "models"] and parts[-2] in ("preupload", "commit"):
                    repo = "/".join(parts[2:-2])
                    if repo not in hub.repos:
                        return self.reply(404, {"error": f"Repository {repo} not found"})
                    if parts[-2] == "preupload":
                        files = json.loads(body)["files"]
                        return self.reply(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                           "shouldIgnore": False} for f in files]})
                    return self.commit(repo, body)
                return self.reply(404, {"error": f"no such endpoint {self.path}"})

            def commit(self, repo, body):
                lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                header = next(item["value"] for item in lines if item["key"] == "header")
                for item in lines:
                    if item["key"] == "file":
                        target = hub.storage / repo / item["value"]["path"]
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(base64.b64decode(item["value"]["content"]))
                hub.commits.append({"repo": repo, "summary": header["summary"]})
                return self.reply(200, {"commitUrl": f"{hub.url}/{repo}/commit/0123abcd", "commitOid": "0123abcd"})

            def reply(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "HubStandIn":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
