"""Serving certificates: self-signed on start, from files, reloaded when the files change."""

from __future__ import annotations

import asyncio
import shutil
import ssl
from pathlib import Path

from cryptography import x509

from adapter.providers.memory import MemoryProvider
from adapter.server import start_adapter
from adapter.tls import self_signed


async def _served_cn(port: int) -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    await writer.wait_closed()
    return str(x509.load_der_x509_certificate(der).subject.rfc4514_string())


async def test_self_signed_by_default() -> None:
    running = await start_adapter(MemoryProvider())
    try:
        assert running.url.startswith("https://127.0.0.1:")
        assert running.reloader is None
        assert await _served_cn(running.port) == "CN=localhost"
    finally:
        await running.stop()


async def test_reload_on_file_change(tmp_path: Path) -> None:
    live, other = tmp_path / "live", tmp_path / "other"
    cert, key = self_signed(live, ["first.example"])
    self_signed(other, ["second.example"])
    running = await start_adapter(MemoryProvider(), cert_file=cert, key_file=key, cert_reload_s=3600)
    try:
        assert await _served_cn(running.port) == "CN=first.example"
        assert running.reloader is not None
        assert not running.reloader.reload_if_changed()
        shutil.copy(other / "tls.key", key)
        shutil.copy(other / "tls.crt", cert)
        assert running.reloader.reload_if_changed()
        assert await _served_cn(running.port) == "CN=second.example"
    finally:
        await running.stop()
