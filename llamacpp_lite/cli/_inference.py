"""`embed`, `rerank`, `complete`, `infill`: the inference endpoints besides chat."""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Any, Iterator

from .._completion import CompletionChunk
from ._common import (
    PROG,
    UsageError,
    client,
    command,
    generation_options,
    generation_params,
    param_option,
    read_json,
    read_stdin,
    read_text,
)


def _lines(path: str | None, arguments: list[str], what: str) -> list[str]:
    """The inputs: the arguments, else the non-blank lines of `path` (`-`: stdin), else of stdin."""
    if arguments and path is not None:
        raise UsageError(f"give the {what} as arguments or with --file, not both")
    if arguments:
        return arguments
    text = read_stdin() if path in (None, "-") else read_text(path, "file")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise UsageError(f"no {what}: every line is blank")
    return lines


def _text(value: str | None, path: str | None, what: str) -> str:
    """A text given inline or as a file (the two options are mutually exclusive)."""
    return read_text(path, f"{what} file") if path is not None else value or ""


def _print_json_line(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False), flush=True)


def _cmd_embed(args: argparse.Namespace) -> int:
    """`embed`: one JSON line per input, `{"index": i, "embedding": [...]}`."""
    inputs = _lines(args.file, args.text, "inputs")
    with client(args) as model:
        result = model.embed(inputs, truncate=args.truncate, batch_limit=args.batch_limit, **dict(args.param))
    for index, vector in enumerate(result.vectors):
        _print_json_line({"index": index, "embedding": vector})
    if not args.quiet:
        width = len(result.vectors[0]) if result.vectors else 0
        print(f"{len(result.vectors)} vectors of {width} numbers, {result.prompt_tokens} tokens",
              file=sys.stderr, flush=True)
    return 0


def _cmd_rerank(args: argparse.Namespace) -> int:
    """`rerank`: the documents best first, `score<TAB>index<TAB>document` (or JSON lines)."""
    documents = _lines(args.file, args.documents, "documents")
    with client(args) as model:
        ranked = model.rerank(args.query, documents, top_n=args.top_n, **dict(args.param))
    for entry in ranked:
        if args.json:
            _print_json_line({"index": entry.index, "score": entry.score, "document": entry.document})
        else:
            print(f"{entry.score:.6g}\t{entry.index}\t{entry.document}", flush=True)
    return 0


def _show(chunks: Iterator[CompletionChunk], quiet: bool) -> None:
    """Print the text as it arrives, then (unless `quiet`) the statistics line on stderr."""
    final = None
    try:
        for chunk in chunks:
            if chunk.text:
                sys.stdout.write(chunk.text)
                sys.stdout.flush()
            final = chunk.final or final
    finally:  # end the line, also when the stream fails or is interrupted
        sys.stdout.write("\n")
        sys.stdout.flush()
    if final is not None and not quiet:
        speed = final.timings.get("predicted_per_second")
        parts = [f"{final.completion_tokens} tokens"] + ([f"{speed:.1f} tokens/s"] if speed else [])
        print(", ".join(parts + [f"stop: {final.stop_reason}"]), file=sys.stderr, flush=True)


def _completion_params(args: argparse.Namespace) -> dict[str, Any]:
    params = generation_params(args)
    if args.json_schema:
        params["json_schema"] = read_json(args.json_schema, "JSON Schema file")
    return params


def _cmd_complete(args: argparse.Namespace) -> int:
    """`complete`: continue a raw prompt (no chat template), streamed."""
    params = _completion_params(args)
    prompt = read_stdin() if args.prompt in (None, "-") else args.prompt
    with client(args) as model, model.stream_complete(prompt, **params) as chunks:
        _show(chunks, args.quiet)
    return 0


def _extra_files(paths: list[str]) -> list[dict[str, str]]:
    return [{"filename": pathlib.Path(path).name, "text": read_text(path, "extra file")} for path in paths]


def _cmd_infill(args: argparse.Namespace) -> int:
    """`infill`: fill in the middle between a prefix and a suffix, streamed."""
    params = _completion_params(args)
    prefix = _text(args.prefix, args.prefix_file, "prefix")
    suffix = _text(args.suffix, args.suffix_file, "suffix")
    if not prefix and not suffix:
        raise UsageError("give a prefix or a suffix (--prefix/--prefix-file, --suffix/--suffix-file)")
    extra = _extra_files(args.extra) if args.extra else None
    with client(args) as model, model.stream_infill(prefix, suffix, prompt=args.prompt, input_extra=extra,
                                                    **params) as chunks:
        _show(chunks, args.quiet)
    return 0


def add(commands: Any, connection: argparse.ArgumentParser) -> None:
    embed = command(commands, "embed", _cmd_embed, "embed texts: one JSON line per input (server: --embeddings)", f"""\
  {PROG} embed "first text" "second text"
  {PROG} embed --file chunks.txt > vectors.jsonl           one input per line (blank lines skipped)
  {PROG} embed --truncate --batch-limit 2048 --file long.txt    cut inputs over the server's -ub
""", [connection])
    embed.add_argument("text", nargs="*", metavar="TEXT", help="the inputs; none reads --file or stdin")
    embed.add_argument("--file", metavar="FILE", help="one input per line ('-': stdin)")
    embed.add_argument("--truncate", action="store_true", help="embed the first tokens of an input over the limit")
    embed.add_argument("--batch-limit", type=int, metavar="N",
                       help="the most tokens of one input: the server's -ub (default 512)")
    param_option(embed)
    embed.add_argument("-q", "--quiet", action="store_true", help="no statistics line on stderr")

    rerank = command(commands, "rerank", _cmd_rerank, "rank documents by relevance to a query (server: --reranking)",
                     f"""\
  {PROG} rerank "what is a cat?" "A cat is a small feline." "Paris is in France."
  {PROG} rerank --top-n 3 --file passages.txt "my question"      one document per line
  {PROG} rerank --json "query" doc1 doc2 | jq -r .document
""", [connection])
    rerank.add_argument("query", metavar="QUERY", help="the query")
    rerank.add_argument("documents", nargs="*", metavar="DOC", help="the documents; none reads --file or stdin")
    rerank.add_argument("--file", metavar="FILE", help="one document per line ('-': stdin)")
    rerank.add_argument("--top-n", type=int, metavar="N", help="print only the best N")
    rerank.add_argument("--json", action="store_true", help="print JSON lines {index, score, document}")
    param_option(rerank)

    complete = command(commands, "complete", _cmd_complete, "continue a raw prompt, without the chat template",
                       f"""\
  {PROG} complete "Once upon a time" --max-tokens 64
  {PROG} complete --grammar yesno.gbnf "Is water wet? Answer:"
  {PROG} complete --param n_probs=3 --param 'stop=["\\n"]' --seed 1 $'Q: 2+2?\\nA:'
  cat prompt.txt | {PROG} complete
""", [connection])
    complete.add_argument("prompt", nargs="?", metavar="PROMPT", help="the prompt; '-' or none reads stdin")
    generation_options(complete, schema_help="constrain the text with a JSON Schema file")
    complete.add_argument("-q", "--quiet", action="store_true", help="no statistics line on stderr")

    infill = command(commands, "infill", _cmd_infill, "fill in the middle between a prefix and a suffix (code models)",
                     f"""\
  {PROG} infill --prefix $'def add(a, b):\\n    ' --suffix $'\\n\\nprint(add(1, 2))'
  {PROG} infill --prefix-file head.py --suffix-file tail.py --extra util.py --max-tokens 128
""", [connection])
    prefix = infill.add_mutually_exclusive_group()
    prefix.add_argument("--prefix", metavar="TEXT", help="the text before the gap")
    prefix.add_argument("--prefix-file", metavar="FILE", help="the text before the gap, from a file")
    suffix = infill.add_mutually_exclusive_group()
    suffix.add_argument("--suffix", metavar="TEXT", help="the text after the gap")
    suffix.add_argument("--suffix-file", metavar="FILE", help="the text after the gap, from a file")
    infill.add_argument("--prompt", metavar="TEXT", help="text the middle starts with")
    infill.add_argument("--extra", action="append", default=[], metavar="FILE",
                        help="another file given as context (repeatable)")
    generation_options(infill, schema_help="constrain the middle with a JSON Schema file")
    infill.add_argument("-q", "--quiet", action="store_true", help="no statistics line on stderr")
