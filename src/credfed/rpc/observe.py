"""What every call leaves behind: a request id on every log line logged while
handling it, one access-log line, and its metrics. Timed once, for both.

The request id is the client's ``x-request-id`` metadata if it is 1-64
characters of ``[A-Za-z0-9._-]``, else a fresh random one; it is returned as
trailing metadata ``x-request-id``, so an integrator can quote it. It is
bound with structlog's contextvars: grpc.aio handles each call in a task of
its own, whose context is a copy taken when the task was created, so a
binding never leaks into another call. Background tasks log with a ``task``
field instead (:func:`in_task`).

Requests and responses are never logged: they hold personal data.
"""

from __future__ import annotations

import asyncio
import contextvars
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, Final, TypeVar

import grpc
from structlog.contextvars import bind_contextvars, unbind_contextvars

from credfed import logging as clog
from credfed.rpc.handlers import WrapperCache
from credfed.rpc.metrics import Metrics, RpcRecorder

REQUEST_ID_KEY: Final = "x-request-id"
_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
_T = TypeVar("_T")

log = clog.get("credfed.rpc")


def request_id(metadata: Any) -> str:
    """The client's id if acceptable (it ends up in logs: no newline, no
    markup, bounded), else a fresh one."""
    for key, value in metadata or ():
        if key == REQUEST_ID_KEY:
            if isinstance(value, str) and _REQUEST_ID.fullmatch(value):
                return value
            break
    return secrets.token_hex(8)


def in_task(task: str, start: Callable[..., _T], *args: Any) -> _T:
    """Call ``start`` (which spawns background tasks) in a copy of the
    current context with ``task`` bound: the tasks it creates copy that
    context, so everything they log carries ``task=...``, and the caller's
    context is left as it was."""

    def tagged() -> _T:
        bind_contextvars(task=task)
        return start(*args)

    return contextvars.copy_context().run(tagged)


async def started_in_task(task: str, start: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """:func:`in_task` for a coroutine function: awaited in a task of its
    own, whose context has ``task`` bound (a coroutine runs in the context
    of the task awaiting it, not of the call that created it)."""
    context = contextvars.copy_context()
    context.run(bind_contextvars, task=task)
    return await asyncio.get_running_loop().create_task(start(), context=context)


class ObserveInterceptor(grpc.aio.ServerInterceptor):
    """Goes first in the server's list: grpc runs the first interceptor's
    handler wrapper outermost, so the request id is bound before auth,
    audit and rate limits log, and the time includes them."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self._metrics = metrics
        self._cache = WrapperCache()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:  # an unknown method: grpc answers UNIMPLEMENTED
            return handler
        method = handler_call_details.method
        return self._cache.get(method, handler, lambda: self._wrap(handler, method))

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        observed = _Method(method, self._metrics.rpc(method) if self._metrics else None)
        des, ser = handler.request_deserializer, handler.response_serializer
        begin, end = observed.begin, observed.end

        if handler.unary_unary or handler.stream_unary:
            inner = handler.unary_unary or handler.stream_unary

            async def unary(request: Any, context: Any) -> Any:
                start = begin(context)
                failure: str | None = None
                try:
                    return await inner(request, context)
                except grpc.aio.AbortError:
                    raise  # context.abort(): the status code says what happened
                except asyncio.CancelledError:
                    failure = "CANCELLED"
                    raise
                except Exception as exc:
                    failure = type(exc).__name__
                    raise
                finally:
                    end(context, start, failure)

            factory = (
                grpc.unary_unary_rpc_method_handler
                if handler.unary_unary
                else grpc.stream_unary_rpc_method_handler
            )
            return factory(unary, des, ser)

        inner_stream = handler.unary_stream or handler.stream_stream

        async def streaming(request: Any, context: Any) -> AsyncIterator[Any]:
            start = begin(context)
            failure: str | None = None
            try:
                async for response in inner_stream(request, context):
                    yield response
            except grpc.aio.AbortError:
                raise
            except asyncio.CancelledError:  # the client went away: the usual end of a stream
                failure = "CANCELLED"
                raise
            except Exception as exc:
                failure = type(exc).__name__
                raise
            finally:
                end(context, start, failure)

        factory = (
            grpc.unary_stream_rpc_method_handler
            if handler.unary_stream
            else grpc.stream_stream_rpc_method_handler
        )
        return factory(streaming, des, ser)


class _Method:
    """The start and end of each call of one method."""

    __slots__ = ("_method", "_record")

    def __init__(self, method: str, record: RpcRecorder | None) -> None:
        self._method = method
        self._record = record

    def begin(self, context: Any) -> float:
        rid = request_id(context.invocation_metadata())
        bind_contextvars(request_id=rid)
        context.set_trailing_metadata(((REQUEST_ID_KEY, rid),))
        return time.perf_counter()

    def end(self, context: Any, start: float, failure: str | None) -> None:
        seconds = time.perf_counter() - start
        code = context.code()
        name = code.name if isinstance(code, grpc.StatusCode) else "OK"
        if failure == "CANCELLED":
            name = failure
        elif failure is not None:
            # A bug: grpc answers UNKNOWN. Log the type only; a message
            # may quote the request, which may hold personal data.
            name = "UNKNOWN"
            log.error("rpc.crashed", method=self._method, exception=failure)
        if self._record is not None:
            self._record(name, seconds)
        # Successful calls at debug: at thousands of verifications a second,
        # one log line each is a measurable share of the CPU. Changes are
        # logged by the domain; failures here at info.
        emit = log.debug if name == "OK" else log.info
        emit("rpc", method=self._method, code=name, ms=round(seconds * 1000, 2))
        unbind_contextvars("request_id")
