"""Get JSON that fits a dataclass: the server enforces the schema, the client validates and builds it.

Usage: python examples/structured_output.py [BASE_URL]   (default: $LLAMACPP_BASE_URL, else http://localhost:8080)
"""

import dataclasses
import os
import sys

from llamacpp_lite import LlamaCppModel, StructuredOutputError

BASE_URL = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("LLAMACPP_BASE_URL", "http://localhost:8080")


@dataclasses.dataclass
class Pet:
    """What we want back. Bounds (`maxLength`, `enum`, ranges) keep a small model's JSON short."""

    name: str = dataclasses.field(metadata={"json_schema": {"maxLength": 12}})
    age: int = dataclasses.field(metadata={"json_schema": {"minimum": 0, "maximum": 30}})
    kind: str = dataclasses.field(metadata={"json_schema": {"enum": ["cat", "dog", "fish"]}})


def main() -> int:
    """Ask for a Pet and print it; exit 1 when the answer does not fit the schema."""
    with LlamaCppModel(BASE_URL, timeout=(5, 120)) as model:
        try:
            *_, last = model.structured_output(Pet, "Describe a pet.", max_tokens=200, seed=1)
        except StructuredOutputError as exc:
            print(f"no valid Pet ({exc}); the model wrote: {exc.raw_text!r}", file=sys.stderr)
            return 1
    pet = last["output"]
    print(pet)
    print(f"{pet.name} is a {pet.age}-year-old {pet.kind}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
