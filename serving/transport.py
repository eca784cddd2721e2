"""uvicorn's httptools protocol with one ``send()`` per response instead of two.

uvicorn writes a response's status line and headers when the app sends
``http.response.start`` and the body on ``http.response.body``: two writes, two syscalls and
two TCP segments for a small JSON answer, which the client also pays for. Here the
connection's writes made in one event-loop turn are joined and written once, at the end of
the turn. Nothing else changes: flow control, keep-alive and closing are uvicorn's.

If uvicorn's protocol no longer keeps the transport in ``self.transport`` (the attribute this
relies on, from uvicorn 0.30 to 0.54), the wrapper is simply not installed.
"""

import asyncio


class CoalescingTransport:
    """Buffers ``write`` calls and writes them as one at the end of the loop turn."""

    __slots__ = ("_transport", "_buffer", "_loop")

    def __init__(self, transport, loop):
        self._transport = transport
        self._loop = loop
        self._buffer = []

    def write(self, data):
        if not self._buffer:
            self._loop.call_soon(self._flush)
        self._buffer.append(data)

    def writelines(self, lines):
        for data in lines:
            self.write(data)

    def _flush(self):
        buffer = self._buffer
        if buffer:
            self._buffer = []
            if not self._transport.is_closing():
                self._transport.write(buffer[0] if len(buffer) == 1 else b"".join(buffer))

    def close(self):
        self._flush()
        self._transport.close()

    def __getattr__(self, name):  # pause_reading, is_closing, get_extra_info, abort, ...
        return getattr(self._transport, name)


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # no httptools: uvicorn's h11 protocol is used as is
    HttpToolsProtocol = None

# uvicorn stops reading a request body past 64 KiB until the app takes it: a 600 KB tensor then
# takes ten event-loop round trips. Buffer up to this much instead (the runtime still enforces
# the endpoint's max_request_bytes while reading).
BODY_BUFFER_BYTES = 4 << 20

if HttpToolsProtocol is not None:

    class BerthHttpProtocol(HttpToolsProtocol):
        def connection_made(self, transport):
            super().connection_made(transport)
            if getattr(self, "transport", None) is transport:
                self.transport = CoalescingTransport(transport, asyncio.get_running_loop())

        def on_body(self, body):
            cycle = self.cycle
            if (self.parser.should_upgrade() and self._should_upgrade()) or cycle.response_complete:
                return
            cycle.body += body
            if len(cycle.body) > BODY_BUFFER_BYTES:
                self.flow.pause_reading()
            cycle.message_event.set()


def protocol_name():
    """What to pass as uvicorn's Config(http=...): an import string, so worker processes can
    load it too."""
    return "serving.transport:BerthHttpProtocol" if HttpToolsProtocol is not None else "auto"
