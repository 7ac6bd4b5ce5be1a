"""llamacpp_lite: a small, synchronous-first client for llama.cpp's llama-server.

Example:
    >>> from llamacpp_lite import LlamaCppModel
    >>> model = LlamaCppModel("http://127.0.0.1:8080")
    >>> model
    LlamaCppModel(base_url='http://127.0.0.1:8080', model_id='default')
"""

import logging

from ._async import AsyncLlamaCppModel
from ._config import Limits, UnsupportedParameterWarning
from ._errors import (
    APIError,
    Aborted,
    AuthenticationError,
    BadRequestError,
    ConnectError,
    ConnectTimeout,
    ContextWindowOverflowException,
    DeadlineExceeded,
    InvalidRequestError,
    LlamaCppError,
    LlamaCppWarning,
    ModalityNotSupportedError,
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
)
from ._model import DEFAULT_RETRY, DEFAULT_TIMEOUT, EventStream, LlamaCppModel
from ._result import ChatResult, ServerProps, ToolUse
from ._version import __version__

__all__ = [
    "APIError",
    "Aborted",
    "AsyncLlamaCppModel",
    "AuthenticationError",
    "BadRequestError",
    "ChatResult",
    "ConnectError",
    "ConnectTimeout",
    "ContextWindowOverflowException",
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUT",
    "DeadlineExceeded",
    "EventStream",
    "InvalidRequestError",
    "Limits",
    "LlamaCppError",
    "LlamaCppModel",
    "LlamaCppWarning",
    "ModalityNotSupportedError",
    "ModelThrottledException",
    "NotSupportedError",
    "ReadTimeout",
    "ServerError",
    "ServerProps",
    "ServerStartError",
    "StreamError",
    "StructuredOutputError",
    "StructuredOutputJSONError",
    "TimeoutException",
    "ToolCallParseError",
    "ToolUse",
    "TransportError",
    "UnsupportedParameterWarning",
    "__version__",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
