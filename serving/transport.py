"""uvicorn's httptools protocol with one ``send()`` per response instead of two.

uvicorn writes a response's status line and headers when the app sends
``http.response.start`` and the body on ``http.response.body``: two writes, two syscalls and
two TCP segments for a small JSON answer, which the client also pays for. Here the
connection's writes made in one event-loop turn are joined and written once, at the end of
the turn. Nothing else changes: flow control, keep-alive and closing are uvicorn's.

If uvicorn's protocol no longer keeps the transport in ``self.transport`` (the attribute this
relies on, from uvicorn 0.30 to 0.55), the wrapper is simply not installed.

It also gives every request a deadline (``--request-timeout``): uvicorn waits for a request's
headers and body for as long as the client takes, so a few clients that open connections and
trickle bytes (slowloris) hold the server's connections and memory for ever. A request that has
not fully arrived ``timeout`` seconds after it began (after the connection opened, for the first
one) is answered 408 and its connection closed. Time the app spends on a request that has
arrived is not counted.
"""

import asyncio

from .protocol import error_body


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


class RequestDeadlines:
    """This worker's watchdog over its connections' requests in transit (one per process: uvicorn
    makes the protocol objects, the runtime starts and stops the watch)."""

    def __init__(self):
        self.connections = set()
        self.timeout = None
        self.on_timeout = None
        self._task = None

    def start(self, timeout, on_timeout=None):
        """Watch from now on (event loop): close requests older than ``timeout`` seconds."""
        self.stop()
        self.timeout = timeout
        self.on_timeout = on_timeout
        self._task = asyncio.ensure_future(self._watch())

    def stop(self):
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _watch(self):
        loop = asyncio.get_running_loop()
        # Checked a few times per timeout, at most once a second: a request is cut between
        # timeout and timeout + interval after it began.
        interval = min(1.0, self.timeout / 4)
        while True:
            await asyncio.sleep(interval)
            oldest = loop.time() - self.timeout
            late = [c for c in self.connections if c.request_began is not None and c.request_began < oldest]
            for connection in late:
                connection.request_timed_out(self.timeout)
                if self.on_timeout is not None:
                    self.on_timeout()


DEADLINES = RequestDeadlines()


def timeout_response(timeout):
    """The raw 408 (status line, headers, JSON body) for a request cut after ``timeout`` s."""
    body = error_body(
        f"request timeout: the request did not arrive within {timeout:g} s (berth-serve --request-timeout)"
    )
    return (
        b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
        + body
    )


if HttpToolsProtocol is not None:

    class BerthHttpProtocol(HttpToolsProtocol):
        request_began = None  # loop time the request in transit began; None: none in transit

        def connection_made(self, transport):
            super().connection_made(transport)
            if getattr(self, "transport", None) is transport:
                self.transport = CoalescingTransport(transport, asyncio.get_running_loop())
            if DEADLINES.timeout is not None:
                self.request_began = self.loop.time()  # a connection that never sends is cut too
                DEADLINES.connections.add(self)

        def connection_lost(self, exc):
            DEADLINES.connections.discard(self)
            self.request_began = None
            super().connection_lost(exc)

        def on_message_begin(self):
            if self.request_began is None and DEADLINES.timeout is not None:
                self.request_began = self.loop.time()
            super().on_message_begin()

        def on_message_complete(self):
            self.request_began = None
            super().on_message_complete()

        def request_timed_out(self, timeout):
            """408 and close (unless a response has begun: then only close). The app, if it is
            reading the body, sees the disconnect."""
            self.request_began = None  # not cut twice; connection_lost forgets the connection
            if self.transport.is_closing():
                return
            if self.cycle is None or not self.cycle.response_started:
                self.transport.write(timeout_response(timeout))
            self.transport.close()

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
