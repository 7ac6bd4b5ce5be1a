"""Several streams at once with the async client: each runs in a thread of its own.

Usage: python examples/async_streams.py [BASE_URL]   (default: $LLAMACPP_BASE_URL, else http://localhost:8080)
"""

import asyncio
import os
import sys
import time

from llamacpp_lite import AsyncLlamaCppModel

BASE_URL = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("LLAMACPP_BASE_URL", "http://localhost:8080")

PROMPTS = ["Tell me about cats.", "Tell me about dogs.", "Tell me about fish.", "Tell me about birds."]


async def answer(model: AsyncLlamaCppModel, number: int, prompt: str) -> str:
    """Stream one answer; print when its first token arrives, and return its text."""
    started = time.perf_counter()
    pieces = []
    async for event in model.stream(prompt, max_tokens=32):
        delta = event.get("contentBlockDelta", {}).get("delta", {})
        if "text" in delta:
            if not pieces:
                print(f"stream {number}: first token after {time.perf_counter() - started:.2f} s")
            pieces.append(delta["text"])
    return "".join(pieces)


async def main() -> None:
    """Run the streams concurrently and print each answer."""
    async with AsyncLlamaCppModel(BASE_URL, timeout=(5, 120)) as model:
        texts = await asyncio.gather(*(answer(model, n, prompt) for n, prompt in enumerate(PROMPTS, 1)))
    for number, text in enumerate(texts, 1):
        print(f"stream {number}: {text!r}")


if __name__ == "__main__":
    asyncio.run(main())
