"""Reusing interceptors' wrapped handlers across calls.

grpc.aio calls every interceptor once per RPC; building a wrapped method
handler each time costs a measurable share of a small call. The handler a
method resolves to is the same object call after call (the innermost one
is the registered servicer method, and every interceptor caches its
wrapper), so each interceptor keeps its wrapper per method and rebuilds it
only if the inner handler changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class WrapperCache:
    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[Any, Any]] = {}

    def get(self, method: str, handler: Any, wrap: Callable[[], Any]) -> Any:
        hit = self._wrapped.get(method)
        if hit is not None and hit[0] is handler:
            return hit[1]
        wrapped = wrap()
        if len(self._wrapped) < 1024:  # methods are few; never grow without bound
            self._wrapped[method] = (handler, wrapped)
        return wrapped
