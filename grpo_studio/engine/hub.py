"""The Hugging Face Hub, reachable or not: one short probe per process, then offline from the cache.

Without this, every hub download behind an unreachable network retries with back-off (ten
`Retrying in Ns` lines, about a minute) before failing. Before the first hub access a process asks
once, with a short timeout, whether the hub answers; if not, it sets HF_HUB_OFFLINE for the rest
of the process (and its children), so models and datasets already in the local cache load at once
and missing ones fail at once, with a message that says what to do.

`HF_HUB_OFFLINE=1` set by the user skips the probe. `HF_ENDPOINT` is honoured (a mirror, or a test's
unreachable address).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass

PROBE_TIMEOUT_S = 3.0
DEFAULT_ENDPOINT = "https://huggingface.co"


@dataclass(frozen=True)
class HubState:
    online: bool
    reason: str = ""  # why offline: "HF_HUB_OFFLINE is set", "http://...: connection refused"
    seconds: float = 0.0  # how long the probe took


_lock = threading.Lock()
_state: HubState | None = None


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")


def offline_requested() -> bool:
    return any(os.environ.get(name, "").upper() in ("1", "ON", "YES", "TRUE")
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def probe(timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when the hub answers within `timeout`, else why not (one line). The standard library's
    client, with the environment's proxies, as the hub libraries use them."""
    import socket
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{endpoint()}/api/models?limit=1", method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:  # it answered: 4xx is reachable (a gated page, a mirror's quirk)
        status = exc.code
    except (TimeoutError, socket.timeout):
        return f"{endpoint()} did not answer within {timeout:g} s"
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return f"{endpoint()} did not answer within {timeout:g} s"
        return f"{endpoint()}: {getattr(reason, 'strerror', None) or reason}"
    except (OSError, ValueError) as exc:  # a malformed HF_ENDPOINT, a broken proxy setting
        return f"{endpoint()}: {_short(exc)}"
    if status >= 500:
        return f"{endpoint()} answered {status}"
    return None


def ensure(timeout: float = PROBE_TIMEOUT_S) -> HubState:
    """The hub's state for this process, probed on the first call (a few seconds at most); offline
    from then on if it did not answer."""
    global _state
    with _lock:
        if _state is not None and (_state.online or offline_requested()):
            return _state
        if offline_requested():
            _state = HubState(online=False, reason="HF_HUB_OFFLINE is set")
            return _state
        started = time.monotonic()
        why = probe(timeout)
        _state = HubState(online=why is None, reason=why or "", seconds=time.monotonic() - started)
        if why is not None:
            go_offline()
        return _state


def state() -> HubState | None:
    """What `ensure` found, or None when nothing in this process has touched the hub yet."""
    return _state


def go_offline() -> None:
    """HF_HUB_OFFLINE for the rest of the process: the environment (read at import, and by child
    processes) and the libraries already imported (they read it once)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    config = sys.modules.get("datasets.config")
    if config is not None:
        config.HF_HUB_OFFLINE = True
        config.HF_DATASETS_OFFLINE = True


def reset() -> None:
    """Forget the probe (tests; a window that wants to look again)."""
    global _state
    with _lock:
        _state = None


def not_on_this_machine(what: str, name: str, field: str) -> str:
    """The message for a hub model or dataset that is not in the cache while the hub cannot be reached."""
    current = _state or HubState(online=False, reason="HF_HUB_OFFLINE is set")
    why = ("HF_HUB_OFFLINE is set (offline: the local cache only)" if current.reason == "HF_HUB_OFFLINE is set"
           else f"the Hugging Face Hub cannot be reached ({current.reason}; working offline from the local "
                "cache, as with HF_HUB_OFFLINE=1)")
    download = (f"hf download {name}" if what == "model" else f"hf download --repo-type dataset {name}")
    local = "a local model folder" if what == "model" else "a local .jsonl / .json / .csv / .parquet file"
    return (f"{what} {name!r} is not on this machine and {why}. Download it once where the hub is reachable "
            f"(`{download}`), or point {field} at {local}.")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
