"""Stream an answer token by token with the synchronous client, then show the statistics.

Usage: python examples/stream_sync.py [BASE_URL]   (default: $LLAMACPP_BASE_URL, else http://localhost:8080)
"""

import os
import sys

from llamacpp_lite import LlamaCppModel

BASE_URL = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("LLAMACPP_BASE_URL", "http://localhost:8080")


def main() -> None:
    """Print the text as it arrives, then the stop reason and the server's token counts."""
    with LlamaCppModel(BASE_URL, timeout=(5, 120), params={"max_tokens": 64, "temperature": 0.7}) as model:
        for event in model.stream("Tell me a short story.", system_prompt="You are a storyteller."):
            if "contentBlockDelta" in event and "text" in event["contentBlockDelta"]["delta"]:
                print(event["contentBlockDelta"]["delta"]["text"], end="", flush=True)
            elif "messageStop" in event:
                print(f"\n\nstop reason: {event['messageStop']['stopReason']}")
            elif "metadata" in event:
                usage, timings = event["metadata"]["usage"], event["metadata"]["timings"]
                print(f"tokens: {usage['inputTokens']} in, {usage['outputTokens']} out, "
                      f"{timings.get('predicted_per_second', 0):.1f} tokens/s")


if __name__ == "__main__":
    main()
