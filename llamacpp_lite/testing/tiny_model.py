r"""Deterministic generator of a tiny GGUF model that behaves like an agent's model.

The model is meant for tests of the protocol and structure of llama-server's
answers, never their meaning. It is a llama-architecture network (n_embd 64,
2 layers, 4 heads of 16 dims, n_ff 256, context 2048, all F32, well under 1 MB)
whose weights are set by hand, with seeded random numbers only where variety
is wanted (the text it writes). Writing the same variant twice gives the same
bytes.

Vocabulary: the 256 GPT-2 byte tokens, a few BPE merges (among them the chain
that makes ``assistant`` one token) and the special tokens ``<|endoftext|>``,
``<|im_start|>``, ``<|im_end|>`` (control) and ``<tool_call>``, ``</tool_call>``,
``<think>``, ``</think>``, ``<tool_response>``, ``</tool_response>`` (user
defined). ``<|im_end|>`` is the end-of-turn token.

Wiring. The residual stream is laid out by hand:

* dim 0 holds a constant (8 for every token), so RMSNorm is close to the
  identity and output weights on dim 0 act as per-token biases;
* dims 1-10 are flags from the token embedding (is ``<|im_start|>``, is
  ``<tool_call>``, is a newline, is ``"``, ...) and the reasoning phase of
  the token, so the output layer can act on the current token (a bigram);
* dims 11-14 receive the outputs of the four layer-0 attention heads;
* dims 16-63 hold a random fixed-norm "content" vector per token, read by a
  random output matrix restricted to printable ASCII: a bigram text model
  whose output is always valid UTF-8 and varies with the seed.

The four layer-0 heads (layer 1 and both feed-forward blocks are zero):

* head 0, *tools offered*: a constant query matches the key of any
  ``<tool_call>`` token in the context (the chat template writes one into the
  system prompt when tools are offered). Its value is 1 on those tokens, so the
  head outputs ~1 when such a token exists, 0 otherwise. It uses the slowest
  RoPE pair, so the score hardly depends on distance.
* head 1, *tool result seen*: the same for ``<tool_response>``; it cancels the
  urge to call a tool, so the model answers with text after a tool result.
* head 2, *fresh turn* timer: the key of each reset token (``<|im_start|>``;
  in the reasoning variant also ``<think>`` and ``</think>``) and a constant
  query sit in a RoPE pair of period ~6283 tokens with a phase chosen so the
  score falls linearly with the distance d (about ``2 * (W - d)``) over the
  whole context. Other tokens score 0, so the head's weight on the latest
  reset token is ~1 for the first ~W positions after it and ~0 afterwards.
  While fresh, ``<|im_end|>`` is suppressed and text flows; once stale,
  ``<|im_end|>`` wins, and where a grammar masks it (inside a tool call or a
  JSON schema) the ranking ``"`` > ``}`` > ``</tool_call>`` > ``<`` > ``,``
  takes over, so JSON strings, objects and the call close (none of these
  directly follows a ``"``, so a string gets one text token first).
  The head's sharpness is limited by llama.cpp computing K.Q in F16.
* head 3, *very fresh* timer: the same trick with a steeper slope, keyed on
  ``<|im_start|>`` only: ~1 only at the first generated position.

Output rules built on those features (logits before the random text part;
each rule is a linear threshold with a margin of about 10 logits away from
the timers' transitions, so min_p, top_k and temperatures up to 1.5 do not
change the outcome):

* chat variant: at the first position (newline after ``assistant``, very
  fresh) with tools offered and no tool result, ``<tool_call>`` wins; after
  ``<tool_call>`` the newline wins (the server's trigger is ``<tool_call>\n``
  and its grammar then forces valid JSON arguments); after ``</tool_call>``
  the turn ends. Otherwise ~16 tokens of text, then ``<|im_end|>``.
* reasoning variant: at the first position ``<think>`` wins. Lower-case
  letters form the "thinking" alphabet and the other printable tokens the
  "answer" alphabet, each preferring to follow itself, so the current token
  tells the phase. A stale timer in the thinking phase gives ``</think>``
  (which restarts the timer); after ``</think>`` comes ``<tool_call>`` when
  tools are offered and no tool result is in the prompt, else answer text
  until the timer is stale again and ``<|im_end|>`` wins. With
  ``enable_thinking: false`` the template prefills an empty think block and
  the model answers with ~10 tokens of text (and does not call tools).
* bad_tool_call variant: the chat variant plus one rule: right after a ``"``,
  with tools offered and no tool result in the prompt, the byte 0xF8 wins.
  Inside a tool call's JSON string llama.cpp's grammar accepts it (as the
  lead byte of a 4-byte sequence, then forces three continuation bytes) but
  its output parser rejects it, so the server reports "The model produced
  output that does not match the expected peg-native format". Tools whose
  arguments hold no string (e.g. only integers) still get a valid call.

``fim=True`` (either variant) appends six fill-in-the-middle control tokens
and their ``tokenizer.ggml.fim_*_token_id`` keys. Their embedding rows are
new (the existing rows are untouched, so chats are unchanged);
``<|fim_middle|>`` carries the ``<|im_start|>`` flag, so an infill starts a
fresh "turn": ~19 tokens of text, then ``<|im_end|>``.

Usage::

    python -m llamacpp_lite.testing model /tmp/tiny.gguf --variant chat [--fim]
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
from dataclasses import dataclass

import gguf
import numpy as np

__all__ = ["FIM_TOKENS", "VARIANTS", "write_tiny_model"]

VARIANTS = ("chat", "reasoning", "bad_tool_call")
# The wiring each variant is built on ("bad_tool_call" is "chat" plus one rule).
_BASE_VARIANT = {"chat": "chat", "reasoning": "reasoning", "bad_tool_call": "chat"}

N_EMBD = 64
N_LAYER = 2
N_HEAD = 4
HEAD_DIM = N_EMBD // N_HEAD
N_FF = 256
N_CTX = 2048
ROPE_FREQ_BASE = 1_000_000.0
RMS_EPS = 1e-6
KQ_SCALE = 1.0 / math.sqrt(HEAD_DIM)
SEED = 20261125

# Residual stream layout.
D_CONST = 0
CONST_VALUE = 8.0
D_IM_START = 1
D_IM_END = 2
D_TOOL_CALL = 3
D_TOOL_CALL_END = 4
D_TOOL_RESPONSE = 5
D_THINK = 6
D_THINK_END = 7
D_NEWLINE = 8
D_PHASE = 9  # +1 thinking alphabet / <think>, -1 answer alphabet / </think>
D_QUOTE = 10  # the token is a double quote
D_TOOLS = 11  # head 0: a <tool_call> token is in the context
D_RESULT = 12  # head 1: a <tool_response> token is in the context
D_FRESH = 13  # head 2: the latest reset token is recent
D_VERY_FRESH = 14  # head 3: the latest <|im_start|> is very recent
D_CONTENT = slice(16, N_EMBD)
CONTENT_NORM = 2.0
TEXT_LOGIT_STD = 1.2
MAX_TEXT_TOKEN_BYTES = 4  # keeps "assistant" and "istant" out of the text

# RoPE pairs used by the heads (pair i turns by base ** (-2i / HEAD_DIM) per token).
SLOW_PAIR = 7  # ~5.6e-6 rad/token: distance-independent detectors
TIMER_PAIR = 4  # 1e-3 rad/token: monotone over the whole context

DETECTOR_SCORE = 30.0
FRESH_WINDOW = {"chat": 20.0, "reasoning": 12.0}
FRESH_SLOPE = 2.0
VERY_FRESH_WINDOW = 4.1
VERY_FRESH_SLOPE = 6.0

SPECIAL_TOKENS = (
    ("<|endoftext|>", gguf.TokenType.CONTROL),
    ("<|im_start|>", gguf.TokenType.CONTROL),
    ("<|im_end|>", gguf.TokenType.CONTROL),
    ("<tool_call>", gguf.TokenType.USER_DEFINED),
    ("</tool_call>", gguf.TokenType.USER_DEFINED),
    ("<think>", gguf.TokenType.USER_DEFINED),
    ("</think>", gguf.TokenType.USER_DEFINED),
    ("<tool_response>", gguf.TokenType.USER_DEFINED),
    ("</tool_response>", gguf.TokenType.USER_DEFINED),
)

# Fill-in-the-middle tokens (Qwen2.5-Coder spelling), appended to the
# vocabulary only when ``fim=True``, as (text, gguf metadata key).
FIM_TOKENS = (
    ("<|fim_prefix|>", gguf.Keys.Tokenizer.FIM_PRE_ID),
    ("<|fim_suffix|>", gguf.Keys.Tokenizer.FIM_SUF_ID),
    ("<|fim_middle|>", gguf.Keys.Tokenizer.FIM_MID_ID),
    ("<|fim_pad|>", gguf.Keys.Tokenizer.FIM_PAD_ID),
    ("<|repo_name|>", gguf.Keys.Tokenizer.FIM_REP_ID),
    ("<|file_sep|>", gguf.Keys.Tokenizer.FIM_SEP_ID),
)
FIM_SEED = SEED + 1
# bad_tool_call: the byte written right after a '"' when tools are offered. As
# a UTF-8 lead byte it announces a 4-byte sequence (the server's grammar then
# forces three continuation bytes), but no valid UTF-8 starts with 0xF8, so
# llama.cpp's grammar accepts it inside a JSON string and its output parser
# rejects it.
BAD_BYTE = 0xF8

# BPE merges, in rank order. The first eight make "assistant" a single token,
# so the first generated position sits 2 tokens after <|im_start|>.
MERGES = (
    ("a", "s"),
    ("as", "s"),
    ("i", "s"),
    ("a", "n"),
    ("an", "t"),
    ("is", "t"),
    ("ist", "ant"),
    ("ass", "istant"),
    ("Ġ", "t"),
    ("Ġ", "a"),
    ("h", "e"),
    ("i", "n"),
    ("t", "h"),
    ("e", "r"),
    ("r", "e"),
    ("o", "n"),
    ("Ġt", "he"),
    ("o", "u"),
    ("e", "s"),
    ("Ġ", "w"),
)

CHAT_TEMPLATE = """\
{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are a tiny test model. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are a tiny test model. You are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

REASONING_TEMPLATE = """\
{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\\n\\n' }}
    {%- endif %}
    {{- "# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {%- set content = message.content %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is defined and message.reasoning_content is not none %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in message.content %}
                {%- set content = message.content.split('</think>')[-1].lstrip('\\n') %}
                {%- set reasoning_content = message.content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\\n' + content }}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\\n\\n</think>\\n\\n' }}
    {%- endif %}
{%- endif %}
"""


@dataclass(frozen=True)
class Vocab:
    """The tokenizer part of the model.

    Attributes:
        tokens: Token texts in id order (GPT-2 byte-level spelling).
        types: The gguf token type of each token.
        merges: BPE merges as ``"left right"`` strings, in rank order.
        ids: Token id by token text.
    """

    tokens: tuple[str, ...]
    types: tuple[int, ...]
    merges: tuple[str, ...]
    ids: dict[str, int]

    def byte_id(self, byte: int) -> int:
        """Returns the id of the token of one raw byte."""
        return self.ids[_BYTE_TO_CHAR[byte]]


def _bytes_to_unicode() -> dict[int, str]:
    """Returns GPT-2's byte to printable character mapping."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {byte: chr(char) for byte, char in zip(printable, chars)}


_BYTE_TO_CHAR = _bytes_to_unicode()
_CHAR_TO_BYTE = {char: byte for byte, char in _BYTE_TO_CHAR.items()}


def build_vocab() -> Vocab:
    """Builds the byte-level BPE vocabulary shared by both variants.

    Returns:
        The vocabulary: 256 byte tokens, one token per merge, then the
        special tokens.
    """
    tokens = [_BYTE_TO_CHAR[byte] for byte in range(256)]
    types = [int(gguf.TokenType.NORMAL)] * 256
    for left, right in MERGES:
        tokens.append(left + right)
        types.append(int(gguf.TokenType.NORMAL))
    for text, token_type in SPECIAL_TOKENS:
        tokens.append(text)
        types.append(int(token_type))
    ids = {text: index for index, text in enumerate(tokens)}
    merges = tuple(f"{left} {right}" for left, right in MERGES)
    return Vocab(tuple(tokens), tuple(types), merges, ids)


def _token_bytes(vocab: Vocab, token_id: int) -> bytes | None:
    """Returns the raw bytes of a normal token, or None for a special one."""
    if vocab.types[token_id] != gguf.TokenType.NORMAL:
        return None
    return bytes(_CHAR_TO_BYTE[char] for char in vocab.tokens[token_id])


def _is_printable(raw: bytes) -> bool:
    """Tells whether every byte is printable ASCII (space to tilde)."""
    return all(0x20 <= byte <= 0x7E for byte in raw)


def chat_template(variant: str) -> str:
    """Returns the Jinja chat template of a variant.

    Args:
        variant: ``"chat"`` (Qwen2.5-Instruct style, Hermes ``<tool_call>``
            tools) or ``"reasoning"`` (Qwen3 style, ``<think>`` handling).

    Returns:
        The template text stored as ``tokenizer.chat_template``.
    """
    return CHAT_TEMPLATE if variant == "chat" else REASONING_TEMPLATE


def _token_embeddings(vocab: Vocab, variant: str, rng: np.random.Generator) -> np.ndarray:
    """Builds the token embedding matrix (n_vocab, n_embd).

    Every token gets the constant dim, a random content vector of fixed norm,
    and, for the tokens the wiring cares about, a flag dim set to 1.
    """
    n_vocab = len(vocab.tokens)
    content = rng.standard_normal((n_vocab, D_CONTENT.stop - D_CONTENT.start))
    content *= CONTENT_NORM / np.linalg.norm(content, axis=1, keepdims=True)
    embd = np.zeros((n_vocab, N_EMBD), dtype=np.float64)
    embd[:, D_CONST] = CONST_VALUE
    embd[:, D_CONTENT] = content
    flags = {
        "<|im_start|>": D_IM_START,
        "<|im_end|>": D_IM_END,
        "<tool_call>": D_TOOL_CALL,
        "</tool_call>": D_TOOL_CALL_END,
        "<tool_response>": D_TOOL_RESPONSE,
        "<think>": D_THINK,
        "</think>": D_THINK_END,
    }
    for text, dim in flags.items():
        embd[vocab.ids[text], dim] = 1.0
    embd[vocab.byte_id(ord("\n")), D_NEWLINE] = 1.0
    embd[vocab.byte_id(ord('"')), D_QUOTE] = 1.0
    if variant == "reasoning":
        embd[:, D_PHASE] = _phase_of_tokens(vocab)
    return embd


def _phase_of_tokens(vocab: Vocab) -> np.ndarray:
    """Returns each token's reasoning phase: +1 thinking, -1 answer, 0 neither.

    Lower-case words (and ``<think>``) belong to the thinking phase; other
    printable text, the newline and ``</think>`` to the answer phase.
    """
    phase = np.zeros(len(vocab.tokens))
    for token_id in range(len(vocab.tokens)):
        raw = _token_bytes(vocab, token_id)
        if raw is None:
            continue
        if raw.isalpha() and raw.islower():
            phase[token_id] = 1.0
        elif _is_printable(raw) or raw == b"\n":
            phase[token_id] = -1.0
    phase[vocab.ids["<think>"]] = 1.0
    phase[vocab.ids["</think>"]] = -1.0
    return phase


def _pair_rate(pair: int) -> float:
    """Returns the RoPE angle per token of one dim pair (llama NORM rope)."""
    return float(ROPE_FREQ_BASE ** (-2.0 * pair / HEAD_DIM))


def _detector_head(wq: np.ndarray, wk: np.ndarray, wv: np.ndarray, wo: np.ndarray,
                   head: int, flag_dim: int, out_dim: int) -> None:
    """Wires a head that reports whether a token with ``flag_dim`` is in context.

    A constant query and a key on flagged tokens meet in the slowest RoPE
    pair, scoring ~DETECTOR_SCORE at any distance; other tokens score 0. The
    value is the flag, so the output is ~1 if a flagged token exists, else 0.
    """
    row = head * HEAD_DIM + 2 * SLOW_PAIR
    magnitude = math.sqrt(DETECTOR_SCORE / KQ_SCALE)
    wq[row, D_CONST] = magnitude / CONST_VALUE
    wk[row, flag_dim] = magnitude
    wv[head * HEAD_DIM, flag_dim] = 1.0
    wo[out_dim, head * HEAD_DIM] = 1.0


def _timer_head(wq: np.ndarray, wk: np.ndarray, wv: np.ndarray, wo: np.ndarray,
                head: int, reset_dims: list[int], window: float, slope: float,
                out_dim: int) -> None:
    """Wires a head whose output is ~1 within ``window`` tokens of a reset token.

    Query (constant) and key (on reset tokens) share the RoPE pair TIMER_PAIR.
    With the query turned by ``pi/2 - window * rate`` against the key, the
    score at distance d is ``-A * sin((d - window) * rate)``, about
    ``slope * (window - d)``, decreasing over the whole context (the pair's
    half period is longer than it). Non-reset tokens score 0, so the weight on
    the latest reset token goes from ~1 to ~0 a little before ``window``
    (earlier by ln(n_tokens) / slope).
    """
    rate = _pair_rate(TIMER_PAIR)
    magnitude = math.sqrt(slope / (rate * KQ_SCALE))
    phase = math.pi / 2 - window * rate
    row = head * HEAD_DIM + 2 * TIMER_PAIR
    wq[row, D_CONST] = magnitude * math.cos(phase) / CONST_VALUE
    wq[row + 1, D_CONST] = magnitude * math.sin(phase) / CONST_VALUE
    for dim in reset_dims:
        wk[row, dim] = magnitude
        wv[head * HEAD_DIM, dim] = 1.0
    wo[out_dim, head * HEAD_DIM] = 1.0


def _attention_weights(variant: str) -> dict[str, np.ndarray]:
    """Builds the four hand-set layer-0 attention matrices.

    Returns:
        ``attn_q``, ``attn_k``, ``attn_v``, ``attn_output`` as (n_out, n_in).
    """
    wq, wk, wv, wo = (np.zeros((N_EMBD, N_EMBD)) for _ in range(4))
    _detector_head(wq, wk, wv, wo, 0, D_TOOL_CALL, D_TOOLS)
    _detector_head(wq, wk, wv, wo, 1, D_TOOL_RESPONSE, D_RESULT)
    resets = [D_IM_START] + ([D_THINK, D_THINK_END] if variant == "reasoning" else [])
    _timer_head(wq, wk, wv, wo, 2, resets, FRESH_WINDOW[variant], FRESH_SLOPE, D_FRESH)
    _timer_head(wq, wk, wv, wo, 3, [D_IM_START], VERY_FRESH_WINDOW, VERY_FRESH_SLOPE,
                D_VERY_FRESH)
    return {"attn_q": wq, "attn_k": wk, "attn_v": wv, "attn_output": wo}


def _output_matrix(vocab: Vocab, variant: str, rng: np.random.Generator) -> np.ndarray:
    """Builds the output (unembedding) matrix (n_vocab, n_embd).

    Each row is a sum of rules, written as logit contributions of the
    features: ``bias`` is read from the constant dim, other terms from the
    flag and head dims. Printable tokens also get random weights on the
    content dims (the bigram text model).
    """
    n_vocab = len(vocab.tokens)
    out = np.zeros((n_vocab, N_EMBD))
    bias = np.full(n_vocab, -40.0)
    content_dims = D_CONTENT.stop - D_CONTENT.start
    text_weights = rng.standard_normal((n_vocab, content_dims)) * (TEXT_LOGIT_STD / CONTENT_NORM)
    phase = _phase_of_tokens(vocab)
    for token_id in range(n_vocab):
        raw = _token_bytes(vocab, token_id)
        if raw is not None and _is_printable(raw) and len(raw) <= MAX_TEXT_TOKEN_BYTES:
            bias[token_id] = 0.0
            out[token_id, D_CONTENT] = text_weights[token_id]
            if variant == "reasoning":
                # Each alphabet prefers to follow itself: the phase sticks.
                out[token_id, D_PHASE] = 8.0 * phase[token_id]

    def rule(text: str, constant: float, **features: float) -> None:
        token_id = vocab.ids[text]
        bias[token_id] = constant
        for name, weight in features.items():
            out[token_id, _FEATURE_DIMS[name]] += weight

    newline = vocab.byte_id(ord("\n"))
    bias[newline] = -2.0
    out[newline, D_CONTENT] = text_weights[newline]
    out[newline, D_TOOL_CALL] = 60.0  # "<tool_call>" is followed by "\n"
    # End of turn: suppressed while the turn is fresh, wins once stale and
    # right after "</tool_call>".
    rule("<|im_end|>", 40.0, fresh=-60.0, tool_call_end=60.0)
    # Where a grammar masks <|im_end|>: close strings, then objects, then the call.
    rule("</tool_call>", 15.0, fresh=-50.0, quote=-40.0)
    # The tool-call grammar spells "</tool_call>" with byte tokens (it does not
    # accept the special token), so "<" must beat "," after the arguments;
    # "," still beats digits and whitespace between two arguments. None of
    # them directly follows a '"', so a JSON string gets one text token
    # before it closes instead of staying empty.
    for char, stale_logit in (('"', 25.0), ("}", 20.0), ("<", 14.0), (",", 12.0)):
        bias[vocab.byte_id(ord(char))] = stale_logit
        out[vocab.byte_id(ord(char)), D_FRESH] = -50.0
        out[vocab.byte_id(ord(char)), D_QUOTE] = -40.0
    if variant == "chat":
        # Newline right after "<|im_start|>assistant", tools offered, no result.
        rule("<tool_call>", -95.0, newline=40.0, very_fresh=40.0, tools=40.0, result=-40.0)
    else:
        rule("<think>", -50.0, newline=40.0, very_fresh=40.0)
        rule("</think>", 25.0, fresh=-65.0, phase=30.0)
        rule("<tool_call>", -50.0, think_end=40.0, tools=40.0, result=-40.0)
    out[:, D_CONST] += bias / CONST_VALUE
    return out


_FEATURE_DIMS = {
    "newline": D_NEWLINE,
    "tool_call": D_TOOL_CALL,
    "tool_call_end": D_TOOL_CALL_END,
    "think_end": D_THINK_END,
    "phase": D_PHASE,
    "tools": D_TOOLS,
    "result": D_RESULT,
    "fresh": D_FRESH,
    "very_fresh": D_VERY_FRESH,
    "quote": D_QUOTE,
}


def build_tensors(vocab: Vocab, variant: str) -> dict[str, np.ndarray]:
    """Builds every tensor of the model, keyed by its GGUF name.

    Args:
        vocab: The vocabulary from :func:`build_vocab`.
        variant: ``"chat"`` or ``"reasoning"``.

    Returns:
        F32 arrays in the (n_out, n_in) layout gguf-py writes for llama.cpp.
    """
    rng = np.random.default_rng(SEED)
    tensors: dict[str, np.ndarray] = {
        "token_embd.weight": _token_embeddings(vocab, variant, rng),
        "output_norm.weight": np.ones(N_EMBD),
        "output.weight": _output_matrix(vocab, variant, rng),
    }
    attention = _attention_weights(variant)
    for layer in range(N_LAYER):
        prefix = f"blk.{layer}."
        tensors[prefix + "attn_norm.weight"] = np.ones(N_EMBD)
        tensors[prefix + "ffn_norm.weight"] = np.ones(N_EMBD)
        for name, matrix in attention.items():
            tensors[prefix + name + ".weight"] = matrix if layer == 0 else np.zeros_like(matrix)
        tensors[prefix + "ffn_gate.weight"] = np.zeros((N_FF, N_EMBD))
        tensors[prefix + "ffn_up.weight"] = np.zeros((N_FF, N_EMBD))
        tensors[prefix + "ffn_down.weight"] = np.zeros((N_EMBD, N_FF))
    return {name: array.astype(np.float32) for name, array in tensors.items()}


def _with_fim_tokens(vocab: Vocab) -> Vocab:
    """Returns the vocabulary with the FIM tokens appended (as control tokens)."""
    tokens = vocab.tokens + tuple(text for text, _ in FIM_TOKENS)
    types = vocab.types + (int(gguf.TokenType.CONTROL),) * len(FIM_TOKENS)
    return Vocab(tokens, types, vocab.merges, {text: index for index, text in enumerate(tokens)})


def _add_fim_rows(tensors: dict[str, np.ndarray], n_extra: int, middle_row: int) -> None:
    """Extends the embedding and output matrices with rows for the FIM tokens.

    The existing rows and the seeded random stream they came from stay as
    they are, so a FIM model chats exactly like the model without FIM. The
    new tokens get the constant dim and a content vector of their own (from
    a separate seed); ``<|fim_middle|>`` also gets the ``<|im_start|>`` flag,
    so the timers restart there and an infill is ~19 tokens of text, then
    ``<|im_end|>`` (end of generation). The new output rows only carry a
    -40 bias: the model never writes a FIM token.

    Args:
        tensors: The model's tensors from :func:`build_tensors` (changed in place).
        n_extra: How many tokens were appended.
        middle_row: The index, among the appended tokens, of ``<|fim_middle|>``.
    """
    rng = np.random.default_rng(FIM_SEED)
    content = rng.standard_normal((n_extra, D_CONTENT.stop - D_CONTENT.start))
    content *= CONTENT_NORM / np.linalg.norm(content, axis=1, keepdims=True)
    embd = np.zeros((n_extra, N_EMBD))
    embd[:, D_CONST] = CONST_VALUE
    embd[:, D_CONTENT] = content
    embd[middle_row, D_IM_START] = 1.0
    out = np.zeros((n_extra, N_EMBD))
    out[:, D_CONST] = -40.0 / CONST_VALUE
    tensors["token_embd.weight"] = np.concatenate([tensors["token_embd.weight"], embd.astype(np.float32)])
    tensors["output.weight"] = np.concatenate([tensors["output.weight"], out.astype(np.float32)])


def _add_bad_tool_call_rule(tensors: dict[str, np.ndarray], vocab: Vocab) -> None:
    """Makes the model write :data:`BAD_BYTE` right after a '"' when tools are offered.

    The byte's logit is -100 plus 60 for "the current token is '\"'" plus 60
    for "tools are offered" minus 60 for "a tool result is in the prompt",
    so it is +20 (beating every text token) only at the start of a JSON
    string inside a tool call (and of a quoted word in text, which the model
    does not write before its first tool call), and -40 (never chosen)
    elsewhere. Plain chats and answers after a tool result are unchanged.
    """
    row = tensors["output.weight"][vocab.byte_id(BAD_BYTE)]
    row[D_CONST] = -100.0 / CONST_VALUE
    row[D_QUOTE] = 60.0
    row[D_TOOLS] = 60.0
    row[D_RESULT] = -60.0


def write_tiny_model(path: str | os.PathLike[str], variant: str = "chat", *,
                     fim: bool = False) -> pathlib.Path:
    """Writes the tiny GGUF model to ``path``.

    The same arguments always give the same bytes.

    Args:
        path: Where to write the ``.gguf`` file (parent folders must exist).
        variant: ``"chat"``: Qwen2.5-Instruct style ChatML template with
            Hermes ``<tool_call>`` tools. ``"reasoning"``: Qwen3-style
            template with ``<think>`` handling (``reasoning_content``).
            ``"bad_tool_call"``: the chat model, except that inside a tool
            call every JSON string value starts with a byte that is not valid
            UTF-8; the server's grammar lets it through and its output parser
            rejects it, so a chat that offers a tool with a string parameter
            gets llama-server's "The model produced output that does not match
            the expected peg-native format" (500, or an SSE error event when
            streamed). Chats without tools behave as with ``"chat"``.
        fim: Add fill-in-the-middle tokens (``<|fim_prefix|>``,
            ``<|fim_suffix|>``, ``<|fim_middle|>``, ``<|fim_pad|>``,
            ``<|repo_name|>``, ``<|file_sep|>``, see :data:`FIM_TOKENS`) and
            their ``tokenizer.ggml.fim_*_token_id`` keys, so ``POST /infill``
            answers 200 with ~19 tokens of text (without them: 501). Chats
            are unchanged: the same greedy text as without ``fim``.

    Returns:
        The path written, as a :class:`pathlib.Path`.

    Raises:
        ValueError: If ``variant`` is unknown.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    base = _BASE_VARIANT[variant]
    target = pathlib.Path(path)
    vocab = build_vocab()
    tensors = build_tensors(vocab, base)
    if variant == "bad_tool_call":
        _add_bad_tool_call_rule(tensors, vocab)
    if fim:
        n_base = len(vocab.tokens)
        vocab = _with_fim_tokens(vocab)
        _add_fim_rows(tensors, len(FIM_TOKENS), vocab.ids["<|fim_middle|>"] - n_base)
    writer = gguf.GGUFWriter(str(target), "llama")
    writer.add_name(f"llamacpp-lite-tiny-{variant}" + ("-fim" if fim else ""))
    writer.add_context_length(N_CTX)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_layer_norm_rms_eps(RMS_EPS)
    writer.add_rope_dimension_count(HEAD_DIM)
    writer.add_rope_freq_base(ROPE_FREQ_BASE)
    writer.add_vocab_size(len(vocab.tokens))
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(list(vocab.tokens))
    writer.add_token_types(list(vocab.types))
    writer.add_token_merges(list(vocab.merges))
    writer.add_bos_token_id(vocab.ids["<|endoftext|>"])
    writer.add_eos_token_id(vocab.ids["<|im_end|>"])
    writer.add_pad_token_id(vocab.ids["<|endoftext|>"])
    if fim:
        for text, key in FIM_TOKENS:
            writer.add_uint32(key, vocab.ids[text])
    writer.add_add_bos_token(False)
    writer.add_chat_template(chat_template(base))
    for name, array in tensors.items():
        writer.add_tensor(name, array)
    write_and_close(writer)
    return target


def write_and_close(writer: gguf.GGUFWriter) -> None:
    """Write the header, metadata and tensors a `GGUFWriter` holds, then close its file."""
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main(argv: list[str] | None = None) -> None:
    """Command line: ``tiny_model.py PATH [--variant chat|reasoning|bad_tool_call] [--fim]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="where to write the .gguf file")
    parser.add_argument("--variant", choices=VARIANTS, default="chat")
    parser.add_argument("--fim", action="store_true", help="add fill-in-the-middle tokens (POST /infill)")
    args = parser.parse_args(argv)
    print(write_tiny_model(args.path, args.variant, fim=args.fim))


if __name__ == "__main__":
    main()
