"""The async shim: the synchronous model, run in worker threads, behind the Strands `Model` interface.

No logic of its own: every method delegates to `LlamaCppModel`. What this module adds is how
the work crosses threads:

* each stream runs in its own thread (not the event loop's default executor, which has only
  `min(32, cpu_count + 4)` workers), so any number of streams progress at once;
* events are handed over in batches: a worker wakes the loop only for an event the loop has
  not been told about, one wake-up serves every stream with events waiting, and while events
  pour in (a fast stream, or many streams at once) the loop looks every 2 ms instead of being
  woken; the buffer is bounded, so a slow consumer holds the producer back instead of growing memory;
* closing the async generator (`aclose()`, leaving `async for`, cancelling the task) aborts the
  HTTP read in the worker, so llama-server cancels the generation and frees the slot;
* an exception raised in the worker is re-raised in the awaiting task unchanged, traceback included.

Nothing is bound to an event loop at construction, so an Agent that makes a new loop for every
invocation works.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import weakref
from typing import Any, AsyncIterator, Callable, Iterator, Literal, Mapping, Optional, Sequence, TypeVar, Union, overload

from ._completion import Completion, CompletionChunk
from ._embeddings import Embeddings, Ranked
from ._events import StreamEvent
from ._model import LlamaCppModel
from ._result import ChatResult, ServerProps
from ._tokens import Token
from ._management import DEFAULT_MODEL_TIMEOUT
from ._server_info import LoraAdapter, ModelInfo, SlotEraseResult, SlotInfo, SlotRestoreResult, SlotSaveResult
from ._transport import CancelScope

__all__ = ["AsyncLlamaCppModel", "aiter_in_thread", "run_in_thread"]

T = TypeVar("T")

_MAX_BUFFERED = 512  # events a worker may run ahead of its consumer
_POLL_S = 0.002  # while events pour in, the loop looks this often instead of being woken for each batch
_FULL_WAIT_S = 1.0  # a worker held back by a full buffer checks this often that its loop still runs


class _End:
    """The last item a worker hands over: how its iterator ended."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class _Doorbell:
    """One per event loop: workers ring it when their items wait, and one wake-up serves many streams.

    Waking the loop from a worker costs a system call and two thread switches, more than
    translating an event. A worker rings only for the first item its handover has not been
    told about, and wakes the loop only when no wake-up is on its way already. When one
    wake-up finds several streams waiting (many streams at once), the doorbell stops being
    rung: the loop looks every `_POLL_S` instead, until a look finds nobody.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)  # (the doorbells are kept by loop: a strong one would keep every loop)
        self._rung: collections.deque[_Handover] = collections.deque()
        self._pending = False  # the loop will look: a wake-up is on its way, or it polls
        self._polling = False

    def ring(self, handover: "_Handover") -> bool:
        """Worker side: have `handover` served soon. False if the loop is closed."""
        self._rung.append(handover)
        if not self._pending:
            self._pending = True
            loop = self._loop()
            try:
                if loop is None:
                    raise RuntimeError("the event loop is gone")
                loop.call_soon_threadsafe(self._answer)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                return False
        return True

    def _serve(self) -> int:
        """Loop side: wake every handover rung so far; return how many."""
        rung = self._rung
        count = len(rung)
        for _ in range(count):
            rung.popleft().wake()
        return count

    def _answer(self) -> None:
        """Loop side, on a ring."""
        if self._polling:
            return  # the next poll serves it
        self._pending = False  # before looking: a handover rung from now on rings again
        if self._serve() > 1:
            self._polling = self._pending = True
            asyncio.get_running_loop().call_later(_POLL_S, self._poll)

    def _poll(self) -> None:
        """Loop side, every `_POLL_S` while many streams deliver."""
        if self._serve():
            asyncio.get_running_loop().call_later(_POLL_S, self._poll)
            return
        self._polling = self._pending = False
        self._serve()  # rung between the look and now, without ringing


_DOORBELLS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Doorbell]" = weakref.WeakKeyDictionary()


class _Handover:
    """A bounded hand-over of items from one worker thread to one event loop.

    The worker appends without a lock and rings the loop's doorbell for the first item the
    loop has not been told about; the loop takes every item there is at each wake-up. A full
    buffer holds the worker back until the loop has taken items.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        bell = _DOORBELLS.get(loop)
        if bell is None:
            bell = _DOORBELLS[loop] = _Doorbell(loop)
        self._bell = bell
        self._items: collections.deque[Any] = collections.deque()
        self._space = threading.Condition(threading.Lock())
        self._rung = False  # the loop will look: a wake-up is on its way, or it polls
        self._polling = False  # items poured in at the last look: the loop polls instead of being rung
        self._waiter: Optional[asyncio.Future[None]] = None
        self.cancelled = False

    def put(self, item: Any) -> bool:
        """Worker side: queue an item, waiting while the buffer is full. False once cancelled."""
        items = self._items
        if len(items) >= _MAX_BUFFERED:
            with self._space:
                while len(items) >= _MAX_BUFFERED and not self.cancelled:
                    if not self._space.wait(_FULL_WAIT_S) and self._loop.is_closed():
                        self.cancelled = True  # closed without closing the stream: nobody will take them
        if self.cancelled:
            return False
        items.append(item)
        if not self._rung:  # (only the loop clears it, before it looks for items)
            self._rung = True
            if not self._bell.ring(self):
                self.cancel()
                return False
        return True

    def wake(self) -> None:
        """Loop side: items have come."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def take(self) -> list[Any]:
        """Loop side: wait for items and take all of them.

        A look that finds several items (they pour in) leaves the worker quiet: the loop looks
        again after `_POLL_S` at the latest instead of being rung. A look that finds one item,
        or a poll that finds none, goes back to being rung for the next item.
        """
        items = self._items
        waited = polled = False
        while True:
            if not self._polling:
                self._rung = False  # before looking: an item appended from now on rings
            count = len(items)
            if count:
                batch = [items.popleft() for _ in range(count)]
                if count >= _MAX_BUFFERED // 2:
                    with self._space:
                        self._space.notify()
                self._polling = self._rung = count > 1
                if not waited:
                    await asyncio.sleep(0)  # let other tasks run even while items pour in
                return batch
            if self._polling:
                if not polled:
                    polled = waited = True
                    await asyncio.sleep(_POLL_S)
                else:
                    self._polling = False
                continue
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
            waited = True

    def cancel(self) -> None:
        """Stop accepting items and release a waiting worker."""
        with self._space:
            self.cancelled = True
            self._space.notify()


def _pump(iterator: Iterator[Any], handover: _Handover) -> None:
    """Worker thread: move every item of `iterator` into `handover`, then an end marker."""
    outcome: BaseException | None = None
    try:
        for item in iterator:
            if not handover.put(item):
                break
    except BaseException as exc:  # handed to the awaiting task, which re-raises it
        outcome = exc
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
    handover.put(_End(outcome))


async def aiter_in_thread(iterator: Iterator[T]) -> AsyncIterator[T]:
    """Iterate a blocking iterator in a thread of its own and yield its items.

    Args:
        iterator: The iterator; its `close()` is called in the worker when iteration ends,
            and its `abort()` (if it has one) from the loop when the consumer stops early.

    Yields:
        The iterator's items, in order.
    """
    handover = _Handover(asyncio.get_running_loop())
    worker = threading.Thread(target=_pump, args=(iterator, handover), name="llamacpp-lite-stream", daemon=True)
    worker.start()
    try:
        while True:
            for item in await handover.take():
                if type(item) is _End:
                    if item.error is not None:
                        raise item.error
                    return
                yield item
    finally:
        if worker.is_alive():
            handover.cancel()
            abort = getattr(iterator, "abort", None)
            if abort is not None:
                abort()


class _OneCall:
    """A blocking call as a one-item iterator that `aiter_in_thread` can abort."""

    def __init__(self, function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._scope = CancelScope()
        self._pending: Any = (function, args, kwargs)

    def __iter__(self) -> "_OneCall":
        return self

    def __next__(self) -> Any:
        if self._pending is None:
            raise StopIteration
        function, args, kwargs = self._pending
        self._pending = None
        return self._scope.run(function, *args, **kwargs)

    def abort(self) -> None:
        self._scope.abort()


async def run_in_thread(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking call in a thread of its own and return its result (or raise its exception).

    Cancelling the awaiting task aborts the requests the call is making (see `CancelScope`).
    """
    async for result in aiter_in_thread(_OneCall(function, args, kwargs)):
        return result  # type: ignore[no-any-return]
    raise RuntimeError("unreachable: the call produced no result")  # pragma: no cover


class AsyncLlamaCppModel:
    """The Strands `Model` interface over `LlamaCppModel`: the same methods, awaitable.

    Every public method of `LlamaCppModel` has a twin here with the same signature: streams are
    async generators, the rest coroutines. Each twin is one delegating line; cancelling the
    awaiting task closes the connection (llama-server then cancels the work).

    Example:
        >>> model = AsyncLlamaCppModel("http://127.0.0.1:8080", params={"max_tokens": 64})
        >>> model.config["model_id"], model.stateful
        ('default', False)

    Args:
        *args: The arguments of `LlamaCppModel`.
        model: An existing `LlamaCppModel` to wrap instead (then give no other arguments).
        **kwargs: The keyword arguments of `LlamaCppModel`.
    """

    def __init__(self, *args: Any, model: Optional[LlamaCppModel] = None, **kwargs: Any) -> None:
        if model is not None and (args or kwargs):
            raise TypeError("give either model= or the LlamaCppModel arguments, not both")
        self.sync = model if model is not None else LlamaCppModel(*args, **kwargs)

    @classmethod
    def wrap(cls, model: LlamaCppModel) -> "AsyncLlamaCppModel":
        """Return an async facade over an existing synchronous model (they share the session)."""
        return cls(model=model)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.sync!r})"

    # -- configuration (no I/O, except context_window_limit's look-up, done off the loop) ----

    @property
    def stateful(self) -> bool:
        """False: the server keeps no conversation; the Agent sends the whole history."""
        return False

    @property
    def base_url(self) -> str:
        """See `LlamaCppModel.base_url`."""
        return self.sync.base_url

    @property
    def config(self) -> dict[str, Any]:
        """The settings (Strands reads `config["model_id"]`)."""
        return self.sync.config

    @property
    def context_window_limit(self) -> Optional[int]:
        """See `LlamaCppModel.context_window_limit` (inside an event loop it never blocks)."""
        return self.sync.context_window_limit

    def estimate_utilization(self, input_tokens: int) -> float:
        """See `LlamaCppModel.estimate_utilization`."""
        return self.sync.estimate_utilization(input_tokens)

    def update_config(self, **model_config: Any) -> None:
        """See `LlamaCppModel.update_config`."""
        self.sync.update_config(**model_config)

    def get_config(self) -> dict[str, Any]:
        """See `LlamaCppModel.get_config`."""
        return self.sync.get_config()

    # -- chat ------------------------------------------------------------------------------

    async def stream(
        self,
        messages: Any,
        tool_specs: Optional[Sequence[Mapping[str, Any]]] = None,
        system_prompt: Optional[str] = None,
        *,
        tool_choice: Optional[Mapping[str, Any]] = None,
        system_prompt_content: Optional[Sequence[Mapping[str, Any]]] = None,
        cancel_signal: Any = None,
        deadline: Optional[float] = None,
        **kwargs: Any,
    ) -> AsyncIterator[StreamEvent]:
        """See `LlamaCppModel.stream`; yields the same events, asynchronously."""
        async for event in aiter_in_thread(self.sync.stream(messages, tool_specs, system_prompt, tool_choice=tool_choice, system_prompt_content=system_prompt_content, cancel_signal=cancel_signal, deadline=deadline, **kwargs)):  # noqa: E501
            yield event

    async def chat(
        self,
        messages: Any,
        tool_specs: Optional[Sequence[Mapping[str, Any]]] = None,
        system_prompt: Optional[str] = None,
        **kwargs: Any,
    ) -> ChatResult:
        """See `LlamaCppModel.chat`."""
        return await run_in_thread(self.sync.chat, messages, tool_specs, system_prompt, **kwargs)

    async def stream_text(self, messages: Any, system_prompt: Optional[str] = None, **kwargs: Any) -> AsyncIterator[str]:
        """See `LlamaCppModel.stream_text`."""
        async for text in aiter_in_thread(self.sync.stream_text(messages, system_prompt, **kwargs)):
            yield text

    async def structured_output(
        self,
        output_model: Any,
        prompt: Any,
        system_prompt: Optional[str] = None,
        *,
        max_attempts: Optional[int] = None,
        deadline: Optional[float] = None,
        **kwargs: Any,
    ) -> AsyncIterator[StreamEvent]:
        """See `LlamaCppModel.structured_output`; the last event is `{"output": obj}`."""
        async for event in aiter_in_thread(self.sync.structured_output(output_model, prompt, system_prompt, max_attempts=max_attempts, deadline=deadline, **kwargs)):  # noqa: E501
            yield event

    async def count_tokens(
        self,
        messages: Any,
        tool_specs: Optional[Sequence[Mapping[str, Any]]] = None,
        system_prompt: Optional[str] = None,
        system_prompt_content: Optional[Sequence[Mapping[str, Any]]] = None,
        *,
        estimate: bool = True,
        deadline: Optional[float] = None,
    ) -> int:
        """See `LlamaCppModel.count_tokens`."""
        return await run_in_thread(self.sync.count_tokens, messages, tool_specs, system_prompt, system_prompt_content, estimate=estimate, deadline=deadline)  # noqa: E501

    # -- inference ---------------------------------------------------------------------------

    @overload
    async def tokenize(self, text: str, *, add_special: bool = ..., with_pieces: Literal[False] = ...) -> list[int]: ...

    @overload
    async def tokenize(self, text: str, *, add_special: bool = ..., with_pieces: Literal[True]) -> list[Token]: ...

    async def tokenize(self, text: str, *, add_special: bool = False,
                       with_pieces: bool = False) -> Union[list[int], list[Token]]:
        """See `LlamaCppModel.tokenize`."""
        return await run_in_thread(self.sync.tokenize, text, add_special=add_special, with_pieces=with_pieces)

    async def detokenize(self, tokens: Sequence[int]) -> str:
        """See `LlamaCppModel.detokenize`."""
        return await run_in_thread(self.sync.detokenize, tokens)

    async def complete(self, prompt: Union[str, Sequence[int]], **params: Any) -> Completion:
        """See `LlamaCppModel.complete`."""
        return await run_in_thread(self.sync.complete, prompt, **params)

    async def stream_complete(self, prompt: Union[str, Sequence[int]], **params: Any) -> AsyncIterator[CompletionChunk]:
        """See `LlamaCppModel.stream_complete`; yields the same chunks, asynchronously."""
        async for chunk in aiter_in_thread(self.sync.stream_complete(prompt, **params)):
            yield chunk

    async def infill(self, prefix: str, suffix: str, *, prompt: Optional[str] = None,
                     input_extra: Optional[Sequence[Mapping[str, str]]] = None, **params: Any) -> Completion:
        """See `LlamaCppModel.infill`."""
        return await run_in_thread(self.sync.infill, prefix, suffix, prompt=prompt, input_extra=input_extra, **params)

    async def stream_infill(self, prefix: str, suffix: str, *, prompt: Optional[str] = None,
                            input_extra: Optional[Sequence[Mapping[str, str]]] = None,
                            **params: Any) -> AsyncIterator[CompletionChunk]:
        """See `LlamaCppModel.stream_infill`; yields the same chunks, asynchronously."""
        async for chunk in aiter_in_thread(self.sync.stream_infill(prefix, suffix, prompt=prompt, input_extra=input_extra, **params)):  # noqa: E501
            yield chunk

    # -- retrieval ---------------------------------------------------------------------------

    async def embed(self, input: Union[str, Sequence[Any]], *, truncate: bool = False,
                    batch_limit: Optional[int] = None, **params: Any) -> Embeddings:
        """See `LlamaCppModel.embed`."""
        return await run_in_thread(self.sync.embed, input, truncate=truncate, batch_limit=batch_limit, **params)

    async def rerank(self, query: str, documents: Sequence[str], *, top_n: Optional[int] = None,
                     **params: Any) -> list[Ranked]:
        """See `LlamaCppModel.rerank`."""
        return await run_in_thread(self.sync.rerank, query, documents, top_n=top_n, **params)

    # -- server management -------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        """See `LlamaCppModel.health`."""
        return await run_in_thread(self.sync.health)

    async def props(self, model_id: Optional[str] = None) -> ServerProps:
        """See `LlamaCppModel.props`."""
        return await run_in_thread(self.sync.props, model_id)

    async def wait_until_ready(self, timeout: float = 60.0, interval: float = 0.1) -> None:
        """See `LlamaCppModel.wait_until_ready`."""
        return await run_in_thread(self.sync.wait_until_ready, timeout, interval)

    async def models(self) -> list[ModelInfo]:
        """See `LlamaCppModel.models`."""
        return await run_in_thread(self.sync.models)

    async def load_model(self, model_id: str, *, wait: bool = True,
                         timeout: float = DEFAULT_MODEL_TIMEOUT) -> ModelInfo:
        """See `LlamaCppModel.load_model`."""
        return await run_in_thread(self.sync.load_model, model_id, wait=wait, timeout=timeout)

    async def unload_model(self, model_id: str, *, wait: bool = True,
                           timeout: float = DEFAULT_MODEL_TIMEOUT) -> ModelInfo:
        """See `LlamaCppModel.unload_model`."""
        return await run_in_thread(self.sync.unload_model, model_id, wait=wait, timeout=timeout)

    async def slots(self, model_id: Optional[str] = None) -> list[SlotInfo]:
        """See `LlamaCppModel.slots`."""
        return await run_in_thread(self.sync.slots, model_id)

    async def save_slot(self, slot_id: int, filename: str, *, model_id: Optional[str] = None) -> SlotSaveResult:
        """See `LlamaCppModel.save_slot`."""
        return await run_in_thread(self.sync.save_slot, slot_id, filename, model_id=model_id)

    async def restore_slot(self, slot_id: int, filename: str, *,
                           model_id: Optional[str] = None) -> SlotRestoreResult:
        """See `LlamaCppModel.restore_slot`."""
        return await run_in_thread(self.sync.restore_slot, slot_id, filename, model_id=model_id)

    async def erase_slot(self, slot_id: int, *, model_id: Optional[str] = None) -> SlotEraseResult:
        """See `LlamaCppModel.erase_slot`."""
        return await run_in_thread(self.sync.erase_slot, slot_id, model_id=model_id)

    async def lora_adapters(self, *, model_id: Optional[str] = None) -> list[LoraAdapter]:
        """See `LlamaCppModel.lora_adapters`."""
        return await run_in_thread(self.sync.lora_adapters, model_id=model_id)

    async def set_lora_adapters(self, scales: Mapping[int, float], *,
                                model_id: Optional[str] = None) -> list[LoraAdapter]:
        """See `LlamaCppModel.set_lora_adapters`."""
        return await run_in_thread(self.sync.set_lora_adapters, scales, model_id=model_id)

    async def metrics(self, *, model_id: Optional[str] = None) -> dict[str, float]:
        """See `LlamaCppModel.metrics`."""
        return await run_in_thread(self.sync.metrics, model_id=model_id)

    # -- lifetime ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the pooled connections."""
        self.sync.close()

    async def aclose(self) -> None:
        """Close the pooled connections."""
        self.sync.close()

    async def __aenter__(self) -> "AsyncLlamaCppModel":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.sync.close()
