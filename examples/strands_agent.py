"""A Strands Agent on llama-server: the Agent runs the tool loop (`pip install 'llamacpp-lite[strands]'`).

Usage: python examples/strands_agent.py [BASE_URL]   (default: $LLAMACPP_BASE_URL, else http://localhost:8080)
"""

import os
import sys

from strands import Agent, tool

from llamacpp_lite import AsyncLlamaCppModel

BASE_URL = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("LLAMACPP_BASE_URL", "http://localhost:8080")


@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first integer.
        b: The second integer.
    """
    print(f"\n[tool] add({a}, {b})")
    return a + b


def main() -> None:
    """Ask the Agent a question that needs the tool; it streams its answer to stdout."""
    model = AsyncLlamaCppModel(BASE_URL, timeout=(5, 120), params={"max_tokens": 128})
    agent = Agent(model=model, tools=[add], system_prompt="Use the tools to compute.")
    result = agent("What is 2 + 3?")
    print(f"\n[agent] stop reason: {result.stop_reason}")
    print(f"[agent] messages in the conversation: {len(agent.messages)}")


if __name__ == "__main__":
    main()
