"""llamacpp_lite: a small, synchronous-first client for llama.cpp's llama-server.

Example:
    >>> from llamacpp_lite import LlamaCppModel
    >>> model = LlamaCppModel("http://127.0.0.1:8080")
    >>> model
    LlamaCppModel(base_url='http://127.0.0.1:8080', model_id='default')
"""

import logging

from ._async import AsyncLlamaCppModel
from ._completion import Completion, CompletionChunk
from ._config import Limits, UnsupportedParameterWarning
from ._embeddings import Embeddings, Ranked
from ._errors import (
    APIError,
    Aborted,
    AuthenticationError,
    BadRequestError,
    ConnectError,
    ConnectTimeout,
    ContextWindowOverflowException,
    DeadlineExceeded,
    InputTooLongError,
    InvalidRequestError,
    LlamaCppError,
    LlamaCppWarning,
    ModalityNotSupportedError,
    ModelLoadError,
    ModelThrottledException,
    NotSupportedError,
    ReadTimeout,
    ServerError,
    ServerStartError,
    StreamError,
    StructuredOutputError,
    StructuredOutputJSONError,
    TimeoutException,
    ToolCallParseError,
    TransportError,
    UnknownModelError,
)
from ._model import DEFAULT_RETRY, DEFAULT_TIMEOUT, EventStream, LlamaCppModel
from ._result import ChatResult, ServerProps, ToolUse
from ._tokens import Token, TokenProbability
from ._server_info import LoraAdapter, ModelInfo, SlotEraseResult, SlotInfo, SlotRestoreResult, SlotSaveResult
from ._version import __version__

__all__ = [
    "APIError",
    "Aborted",
    "AsyncLlamaCppModel",
    "AuthenticationError",
    "BadRequestError",
    "ChatResult",
    "Completion",
    "CompletionChunk",
    "ConnectError",
    "ConnectTimeout",
    "ContextWindowOverflowException",
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUT",
    "DeadlineExceeded",
    "Embeddings",
    "EventStream",
    "InputTooLongError",
    "InvalidRequestError",
    "Limits",
    "LlamaCppError",
    "LlamaCppModel",
    "LlamaCppWarning",
    "LoraAdapter",
    "ModalityNotSupportedError",
    "ModelInfo",
    "ModelLoadError",
    "ModelThrottledException",
    "NotSupportedError",
    "Ranked",
    "ReadTimeout",
    "ServerError",
    "ServerProps",
    "ServerStartError",
    "SlotEraseResult",
    "SlotInfo",
    "SlotRestoreResult",
    "SlotSaveResult",
    "StreamError",
    "StructuredOutputError",
    "StructuredOutputJSONError",
    "TimeoutException",
    "Token",
    "TokenProbability",
    "ToolCallParseError",
    "ToolUse",
    "TransportError",
    "UnknownModelError",
    "UnsupportedParameterWarning",
    "__version__",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
