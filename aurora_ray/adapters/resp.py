"""A minimal asyncio Redis client (RESP2 over hiredis' parser) for the API's hottest read.

redis-py's asyncio client spends 110-130 µs of CPU a command here (its connection pool, locks and
stream reader); a plain asyncio protocol over hiredis' parser sends the same ``ZRANGE`` for
~24 µs (measured in one process, same Valkey). ``GET /v1/stock/alerts`` makes one call a
request, so :class:`RedisStore.alerts_async` goes through this client; everything else keeps
redis-py.

One connection per event loop, commands pipelined on it (Redis answers in order); a dropped
connection fails its pending calls with :class:`redis.exceptions.ConnectionError` and is made
again on the next call. Every call waits at most ``timeout`` seconds. URLs are parsed by
redis-py (``redis://[[user]:password@]host[:port][/db]``); ``AUTH`` and ``SELECT`` are sent on
connect. Error replies raise :class:`redis.exceptions.ResponseError`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, cast

import hiredis
import redis.exceptions
from redis.asyncio.connection import parse_url

__all__ = ["RespClient", "supports"]


def supports(url: str) -> bool:
    """Plain TCP ``redis://`` URLs; TLS and unix sockets stay with redis-py."""
    return url.startswith("redis://")


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A TCP transport (uvloop's, under Serve, is no subclass of asyncio.Transport).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            waiter = self.waiting.popleft()
            if not waiter.done():  # a call that timed out still takes its reply off the queue
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_exception(redis.exceptions.ConnectionError(f"connection lost: {exc}"))

    def send(self, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        assert self.transport is not None  # noqa: S101 - connected before use
        waiter = asyncio.get_running_loop().create_future()
        self.transport.write(hiredis.pack_command(args))
        self.waiting.append(waiter)
        return waiter


class RespClient:
    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        options = parse_url(url)
        self.host = str(options.get("host", "localhost"))
        self.port = int(options.get("port", 6379))
        self.db = int(options.get("db", 0))
        self.username = options.get("username")
        self.password = options.get("password")
        self.timeout = timeout
        self._connection: _Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting: asyncio.Future[_Connection] | None = None

    async def call(self, *args: Any) -> Any:
        """Send one command and return its reply (bytes, int, list, or None)."""
        connection = self._connection
        if connection is None or connection.lost or self._loop is not asyncio.get_running_loop():
            connection = await self._connect()
        return await self._wait(connection.send(args))

    async def _wait(self, waiter: asyncio.Future[Any]) -> Any:
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.timeout, _time_out, waiter, self.timeout)
        try:
            reply = await waiter
        finally:
            timer.cancel()
        if isinstance(reply, hiredis.ReplyError):
            raise _reply_error(str(reply))
        return reply

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        if self._connecting is not None and self._loop is loop:
            return await self._connecting  # another call is connecting on this loop
        self._loop, self._connection = loop, None
        self._connecting = loop.create_future()
        try:
            try:
                _, connection = await asyncio.wait_for(
                    loop.create_connection(_Connection, self.host, self.port), self.timeout
                )
            except (OSError, TimeoutError) as exc:
                raise redis.exceptions.ConnectionError(
                    f"cannot connect to {self.host}:{self.port}: {exc}"
                ) from exc
            if self.password is not None:
                auth = (self.username, self.password) if self.username else (self.password,)
                await self._wait(connection.send(("AUTH", *auth)))
            if self.db:
                await self._wait(connection.send(("SELECT", self.db)))
        except BaseException as exc:
            self._connecting.set_exception(exc)
            self._connecting.exception()  # retrieved: no "never retrieved" warning
            self._connecting = None
            raise
        self._connection = connection
        self._connecting.set_result(connection)
        self._connecting = None
        return connection

    def close(self) -> None:
        if self._connection is not None and self._connection.transport is not None:
            self._connection.transport.close()
        self._connection = None


def _reply_error(text: str) -> redis.exceptions.RedisError:
    """The exception redis-py raises for this error reply: a server that is still loading its
    data, or read-only, or without its master, is unavailable (a ``ConnectionError``, which the
    API answers ``503``), not a bad command."""
    if text.startswith("LOADING"):
        return redis.exceptions.BusyLoadingError(text)
    if text.startswith(("READONLY", "MASTERDOWN")):
        return redis.exceptions.ConnectionError(text)
    return redis.exceptions.ResponseError(text)


def _time_out(waiter: asyncio.Future[Any], timeout: float) -> None:
    if not waiter.done():
        waiter.set_exception(redis.exceptions.TimeoutError(f"no reply within {timeout} s"))
