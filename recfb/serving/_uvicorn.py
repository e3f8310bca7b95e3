"""uvicorn's httptools protocol with a deadline for idle and half-sent requests.

uvicorn arms its keep-alive timer only after a response: a connection that never sends a
request, or sends half its headers and stalls, stays open forever, and enough of them fill
``--limit-concurrency`` so that everyone else gets 503 (measured in benchmarks/serving_http.py).
This protocol closes a connection whose request headers have not fully arrived within
``timeout_keep_alive`` seconds of the connection (or of the first byte of the next request);
after a response, uvicorn's own keep-alive timer applies as before. Request bodies are bounded
in time by the app (``body_timeout``).
"""
from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    _headers_deadline = None

    def _arm_headers_deadline(self) -> None:
        self._cancel_headers_deadline()
        self._headers_deadline = self.loop.call_later(self.timeout_keep_alive, self._headers_timed_out)

    def _cancel_headers_deadline(self) -> None:
        if self._headers_deadline is not None:
            self._headers_deadline.cancel()
            self._headers_deadline = None

    def _headers_timed_out(self) -> None:
        self._headers_deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_headers_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_headers_deadline()

    def on_headers_complete(self) -> None:
        self._cancel_headers_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc) -> None:
        self._cancel_headers_deadline()
        super().connection_lost(exc)


def http_protocol() -> str:
    """The ``http=`` setting for uvicorn: the guarded protocol when httptools is installed
    (uvicorn[standard]), else uvicorn's h11 (without the deadline on fresh connections)."""
    try:
        import httptools  # noqa: F401
    except ImportError:  # pragma: no cover - uvicorn[standard] brings httptools
        return "h11"
    return "recfb.serving._uvicorn:GuardedHttpToolsProtocol"
