"""Tool calling by hand: offer tools, run the ones the model calls, send the results back, repeat.

Usage: python examples/tool_calls.py [BASE_URL]   (default: $LLAMACPP_BASE_URL, else http://localhost:8080)
"""

import os
import sys

from llamacpp_lite import LlamaCppModel

BASE_URL = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("LLAMACPP_BASE_URL", "http://localhost:8080")

TOOL_SPECS = [
    {
        "name": "add",
        "description": "Add two integers.",
        "inputSchema": {"json": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                                 "required": ["a", "b"]}},
    },
]
TOOLS = {"add": lambda a, b: a + b}
MAX_ROUNDS = 5  # never loop forever on a model that keeps calling tools


def run_tool(name: str, arguments: object) -> dict:
    """Run one tool call and return its Strands `toolResult` content and status."""
    try:
        value = TOOLS[name](**arguments)
    except Exception as exc:  # a bad call goes back to the model as an error result
        return {"status": "error", "content": [{"text": f"{type(exc).__name__}: {exc}"}]}
    return {"status": "success", "content": [{"json": {"result": value}}]}


def main() -> int:
    """Loop until the model answers with text; exit 1 if it never does."""
    messages = [{"role": "user", "content": [{"text": "What is 2 + 3?"}]}]
    with LlamaCppModel(BASE_URL, timeout=(5, 120), params={"max_tokens": 128}) as model:
        for _ in range(MAX_ROUNDS):
            result = model.chat(messages, TOOL_SPECS)
            if result.stop_reason != "tool_use":
                print(f"answer: {result.text!r} (stop reason {result.stop_reason})")
                return 0
            messages.append({"role": "assistant", "content": [
                {"toolUse": {"toolUseId": use.tool_use_id, "name": use.name, "input": use.input}}
                for use in result.tool_uses
            ]})
            results = []
            for use in result.tool_uses:
                outcome = run_tool(use.name, use.input or {})
                print(f"tool call: {use.name}({use.raw_input}) -> {outcome['status']}: {outcome['content'][0]}")
                results.append({"toolResult": {"toolUseId": use.tool_use_id, **outcome}})
            messages.append({"role": "user", "content": results})
    print(f"no answer after {MAX_ROUNDS} rounds of tool calls", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
