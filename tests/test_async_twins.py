"""Every public method of LlamaCppModel has an awaitable twin with the same signature."""

from __future__ import annotations

import inspect
import typing

from llamacpp_lite import AsyncLlamaCppModel, LlamaCppModel

STREAMS = {"stream": "AsyncIterator[StreamEvent]", "structured_output": "AsyncIterator[StreamEvent]",
           "stream_text": "AsyncIterator[str]", "stream_complete": "AsyncIterator[CompletionChunk]",
           "stream_infill": "AsyncIterator[CompletionChunk]"}
"""Methods returning an iterator: their twin is an async generator of the same items."""

SYNC_ONLY = {"close"}  # AsyncLlamaCppModel.close exists too, and aclose() beside it


def public_methods(cls):
    return {name: member for name, member in inspect.getmembers(cls)
            if not name.startswith("_") and callable(member) and not isinstance(member, type)}


def test_every_public_method_has_a_twin_with_the_same_signature():
    sync, twins = public_methods(LlamaCppModel), public_methods(AsyncLlamaCppModel)
    missing = sorted(set(sync) - set(twins))
    assert not missing, f"no async twin for {missing}"
    for name, method in sync.items():
        mine, theirs = inspect.signature(method), inspect.signature(twins[name])
        assert list(mine.parameters.values()) == list(theirs.parameters.values()), name
        if name in STREAMS:
            assert inspect.isasyncgenfunction(twins[name]) and theirs.return_annotation == STREAMS[name], name
        elif name in ("update_config", "get_config", "estimate_utilization", *SYNC_ONLY):
            assert not inspect.iscoroutinefunction(twins[name]), name
            assert theirs.return_annotation == mine.return_annotation, name
        else:
            assert inspect.iscoroutinefunction(twins[name]), f"{name} is not awaitable"
            assert theirs.return_annotation == mine.return_annotation, name


def test_every_public_property_has_a_twin():
    properties = {name for name, member in inspect.getmembers(LlamaCppModel) if isinstance(member, property)}
    for name in properties:
        assert isinstance(getattr(AsyncLlamaCppModel, name, None), property), name


def test_return_annotations_resolve():
    for cls in (LlamaCppModel, AsyncLlamaCppModel):
        for name, method in public_methods(cls).items():
            typing.get_type_hints(method)  # raises for a name that does not exist
