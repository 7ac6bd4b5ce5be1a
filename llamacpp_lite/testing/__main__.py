"""Command line: ``python -m llamacpp_lite.testing {model,mmproj,lora} PATH [options]``.

Each sub-command is the command line of one writer (``--help`` lists its
options), e.g. ``python -m llamacpp_lite.testing model /tmp/tiny.gguf --fim``.
"""

from __future__ import annotations

import sys

from llamacpp_lite.testing import tiny_lora, tiny_mmproj, tiny_model

_COMMANDS = {"model": tiny_model.main, "mmproj": tiny_mmproj.main, "lora": tiny_lora.main}


def main(argv: list[str] | None = None) -> int:
    """Runs one writer's command line.

    Args:
        argv: The arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0, or 2 for an unknown sub-command.
    """
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in _COMMANDS:
        print(f"usage: python -m llamacpp_lite.testing {{{','.join(_COMMANDS)}}} PATH [options]", file=sys.stderr)
        return 2
    _COMMANDS[args[0]](args[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
