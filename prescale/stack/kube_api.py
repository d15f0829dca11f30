"""Minimal synchronous HTTPS access to the local apiserver for start-up checks.

Start-up polls run before any event loop exists, so they use the standard library with the
admin client certificate; tests and programs use their own clients.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Any

from prescale.stack.pki import ClusterPki


def admin_context(pki: ClusterPki) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca.cert))
    ctx.load_cert_chain(str(pki.admin.cert), str(pki.admin.key))
    return ctx


def insecure_context() -> ssl.SSLContext:
    """For the health ports of KCM and the scheduler, which serve self-signed certificates."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def http_ok(url: str, ctx: ssl.SSLContext | None = None, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s, context=ctx) as resp:
            return 200 <= int(resp.status) < 300
    except urllib.error.HTTPError:
        return False
    except (urllib.error.URLError, TimeoutError, ConnectionError):
        return False


def get_json(url: str, ctx: ssl.SSLContext, timeout_s: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s, context=ctx) as resp:
        return json.loads(resp.read())
