"""What one step of a compiled decode loop does: a census of XLA's optimized HLO of a loop body.

Decoding runs as an XLA `while` loop, one iteration per new token (keras-llm without stop tokens:
a counted loop of several tokens inside one that checks whether to go on; the largest body is
still one token's step). Every instruction at the top level of the loop body that computes
something (a fusion, a matmul or a cuBLAS/cuDNN custom call, a copy) is one kernel launch per
token on a GPU, and at batch 1 a GPT-2 step is short enough for those launches, not the weight
reads, to set its speed. A copy of a cache-sized buffer is also memory traffic that the model
does not need. So, per compiled loop, this counts:

- `instructions`: top-level instructions of the body by opcode, without the free ones
  (parameters, tuple plumbing, constants, bitcasts);
- `launches`: their total, the kernels per step;
- `kernels_in_calls`: the instructions inside the body's `call`s, which is where a GPU compiler
  puts a run of kernels it launches at once as a command buffer (a CUDA graph): such a call is
  one launch in `launches`;
- `copies`: every `copy` (and `copy-start`) with its shape, and their bytes per step;
- `written_bytes`: what the launched kernels write per step, counting an in-place write of one
  slot into a buffer (a fusion whose root is a `dynamic-update-slice`, how the cache is
  written) as the slot and leaving out a cuBLAS call's workspace; and `large_writes`, the
  results over 1 MB among them. A decode step needs to write little besides its cache slots
  (activations of one token per row): a large write is an intermediate the compiler did not
  fuse away, written and then read again;
- `cache_buffer`: the largest loop-carried array of rank 4 or more (the key/value cache, which
  tells the batch size);
- `known_trip_count`: the iterations of the loop if XLA could tell them when compiling, else
  `None`. A GPU runs such a loop without waiting for the device to say whether to go on, so the
  host can queue the next steps' kernels while the device works; other loops copy their
  condition's result to the host every iteration.

Not counted: the loop's condition, a small computation of its own each iteration (on a GPU
also a copy of its result to the host, unless the whole loop runs as a command buffer). If
XLA unrolled the loop, its body holds several steps: divide by the unroll factor.

Usage: dump the optimized HLO of a benchmark run, then read the dump:

    XLA_FLAGS="--xla_dump_to=/tmp/hlo --xla_dump_hlo_as_text" KERAS_BACKEND=jax \\
        python -m benchmarks.generate --size=gpt2_small --batch_sizes=1,16 --repeats=1
    python -m benchmarks.hlo_census /tmp/hlo --output=benchmarks/results/decode_hlo.json

Every module in the dump that holds a `while` loop gets a row (for the benchmark above: one per
library and batch size; keras-llm's decode module is named `jit_stateless`, keras-hub's
`jit_compiled_generate_function`); the loop with the largest body is the one counted.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # Run as `python benchmarks/hlo_census.py`.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import format_table, write_json  # noqa: E402

# Instructions that launch nothing: they name, bundle, reinterpret or order existing buffers.
# The `-done` half of an asynchronous pair (copy-start/copy-done, ...) waits for its `-start`.
FREE_OPCODES = frozenset({"parameter", "get-tuple-element", "tuple", "constant", "bitcast",
                          "opt-barrier", "after-all", "add-dependency"})
BYTES_PER_ELEMENT = {"pred": 1, "s8": 1, "u8": 1, "bf16": 2, "f16": 2, "s16": 2, "u16": 2,
                     "f32": 4, "s32": 4, "u32": 4, "f64": 8, "s64": 8, "u64": 8}
# keras-llm's decode function (compiled as `stateless`) and keras-hub's generate function; not
# the random initializers, which hold loops too.
DECODE_MODULES = r"stateless|generate"
LARGE_WRITE_BYTES = 1_000_000
_INSTRUCTION_NAME = re.compile(r"^\s+(?:ROOT )?%?[\w.\-]+ = ")
_OPCODE = re.compile(r"^ ([\w\-]+)\(")
_ARRAY = re.compile(r"^\(?(\w+)\[([\d,]*)\]")


def parse_instruction(line: str) -> tuple[str, str] | None:
    """`(result type, opcode)` of one HLO instruction line, else `None`.

    The type is an array (`f32[16,768]{1,0}`) or a tuple, which XLA prints with spaces:
    `%gemm = (f32[16,768]{1,0}, s8[4194304]{0}) custom-call(...)`.
    """
    name = _INSTRUCTION_NAME.match(line)
    if not name:
        return None
    rest = line[name.end():]
    if rest.startswith("("):
        end = _closing_parenthesis(rest)
        result, rest = rest[: end + 1], rest[end + 1:]
    else:
        result, _, rest = rest.partition(" ")
        rest = " " + rest
    opcode = _OPCODE.match(rest)
    return (result, opcode.group(1)) if opcode else None


def _closing_parenthesis(text: str) -> int:
    """Index of the parenthesis that closes the one `text` starts with."""
    depth = 0
    for index, char in enumerate(text):
        depth += 1 if char == "(" else -1 if char == ")" else 0
        if depth == 0:
            return index
    return len(text) - 1


def launches_a_kernel(opcode: str) -> bool:
    return opcode not in FREE_OPCODES and not opcode.endswith("-done")


def computations(hlo_text: str) -> dict[str, list[str]]:
    """The instruction lines of every computation of an HLO module's text, by name."""
    bodies: dict[str, list[str]] = {}
    lines: list[str] | None = None
    for line in hlo_text.splitlines():
        if line and not line[0].isspace() and line.rstrip().endswith("{"):
            header = line.split()
            name = header[1] if header[0] == "ENTRY" else header[0]
            lines = bodies.setdefault(name.lstrip("%"), [])
        elif line.startswith("}"):
            lines = None
        elif lines is not None:
            lines.append(line)
    return bodies


def entry_launches(hlo_text: str) -> int:
    """Kernels launched at the top level of a module's entry computation (a program without a
    loop: one layer, one training step)."""
    entry = re.search(r"^ENTRY %?([\w.\-]+)", hlo_text, re.MULTILINE)
    if entry is None:
        raise ValueError("The HLO text has no ENTRY computation.")
    return sum(
        1 for line in computations(hlo_text)[entry.group(1)]
        if (found := parse_instruction(line)) and launches_a_kernel(found[1])
    )


def array_bytes(shape: str) -> int:
    """Bytes of an HLO array type such as `f32[1,12,160,64]{3,2,1,0}`; of a tuple's first
    element (what a `copy-start` copies); 0 for a type it does not know."""
    match = _ARRAY.match(shape)
    if not match or match.group(1) not in BYTES_PER_ELEMENT:
        return 0
    elements = 1
    for dim in filter(None, match.group(2).split(",")):
        elements *= int(dim)
    return elements * BYTES_PER_ELEMENT[match.group(1)]


def _array_types(result: str) -> list[str]:
    """The array types of an instruction's result: one, or a tuple's elements."""
    return re.findall(r"\w+\[[\d,]*\]", result)


def written_bytes(line: str, result: str, opcode: str, bodies: dict[str, list[str]]) -> int:
    """Bytes that one launched instruction writes (see `written_bytes` in the module doc)."""
    arrays = _array_types(result)
    if opcode == "custom-call" and len(arrays) > 1 and arrays[-1].startswith(("s8[", "u8[")):
        arrays = arrays[:-1]  # A library call's scratch workspace.
    if opcode.endswith("-start"):
        arrays = arrays[:1]  # (destination, source, context) of an asynchronous copy.
    callee = re.search(r"calls=%?([\w.\-]+)", line)
    fused = bodies.get(callee.group(1), ()) if callee else ()
    root = next((inner for inner in fused if inner.lstrip().startswith("ROOT ")), "")
    if " dynamic-update-slice(" in root:
        update = re.search(r"dynamic-update-slice\(%?[\w.\-]+, %?([\w.\-]+)", root).group(1)
        for inner in fused:
            found = parse_instruction(inner)
            if found and re.match(rf"\s+(?:ROOT )?%?{re.escape(update)} = ", inner):
                return array_bytes(found[0])
    return sum(array_bytes(array) for array in arrays)


def loop_census(hlo_text: str) -> dict[str, Any] | None:
    """The census of the largest `while` body of one optimized HLO module; `None` without one."""
    bodies = computations(hlo_text)
    loops = {  # body name: its `while` instruction
        match.group(1): line
        for lines in bodies.values()
        for line in lines
        if " while(" in line and (match := re.search(r"body=%?([\w.\-]+)", line))
    }
    if not loops:
        return None
    body = max(loops, key=lambda name: len(bodies.get(name, ())))
    trip_count = re.search(r'"known_trip_count":\{"n":"(\d+)"', loops[body])
    instructions: collections.Counter[str] = collections.Counter()
    copies = []
    carried: list[str] = []
    kernels_in_calls = 0
    written = 0
    large_writes = []
    for line in bodies[body]:
        if " parameter(0)" in line:
            # The loop state, e.g. (s32[], f32[16,12,160,64]{3,2,1,0}, ...): its arrays of rank
            # 4 or more are the key/value cache, whose shape tells the batch size.
            carried = re.findall(r"\w+\[\d+,\d+,\d+,[\d,]+\]", line.split(" parameter(")[0])
        parsed = parse_instruction(line)
        if parsed is None or not launches_a_kernel(parsed[1]):
            continue
        result, opcode = parsed
        instructions[opcode] += 1
        write = written_bytes(line, result, opcode, bodies)
        written += write
        if write > LARGE_WRITE_BYTES:
            large_writes.append(result.split("{")[0])
        if opcode in ("copy", "copy-start"):
            # copy-start returns (destination, source, context): the copied array comes first.
            copies.append(_ARRAY.match(result).group(0).lstrip("("))
        callee = re.search(r"to_apply=%?([\w.\-]+)", line)
        if opcode == "call" and callee:
            # A GPU command buffer (a CUDA graph): one launch holding several kernels.
            kernels_in_calls += sum(
                1 for inner in bodies.get(callee.group(1), ())
                if (found := parse_instruction(inner)) and launches_a_kernel(found[1])
            )
    return {
        "loop_body": body,
        "known_trip_count": int(trip_count.group(1)) if trip_count else None,
        "cache_buffer": max(carried, key=array_bytes, default=None),
        "launches": sum(instructions.values()),
        "kernels_in_calls": kernels_in_calls,
        "instructions": dict(instructions.most_common()),
        "copies": copies,
        "copy_bytes": sum(array_bytes(shape) for shape in copies),
        "written_bytes": written,
        "large_writes": large_writes,
    }


def census(dump_dir: str | Path, modules: str = DECODE_MODULES) -> list[dict[str, Any]]:
    """One census per optimized module with a loop in an `--xla_dump_to` folder whose module
    name matches the regular expression `modules`."""
    dump_dir = Path(dump_dir)
    if not dump_dir.is_dir():
        raise FileNotFoundError(
            f"No HLO dump folder at {dump_dir}: run the benchmark with "
            f'XLA_FLAGS="--xla_dump_to={dump_dir} --xla_dump_hlo_as_text" first.'
        )
    # module_0166.jit_stateless.cpu_after_optimizations.txt (on a GPU: ...gpu_after_...)
    files = sorted(dump_dir.glob("*after_optimizations.txt"))
    if not files:
        raise ValueError(
            f"{dump_dir} holds no '*after_optimizations.txt' file: add --xla_dump_hlo_as_text "
            "to XLA_FLAGS (the dump is in binary protos otherwise)."
        )
    rows = []
    for path in files:
        module = path.name.split(".")[1] if path.name.count(".") >= 2 else path.stem
        if not re.search(modules, module):
            continue
        found = loop_census(path.read_text(encoding="utf-8"))
        if found is not None:
            rows.append({"module": module, "file": path.name, **found})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """One line per loop: launches, matmuls, fusions and copies per step."""
    headers = ["module", "largest cache buffer", "trip count", "launches/step",
               "in command buffers", "dots + custom calls", "fusions", "copies", "copy MB/step",
               "written MB/step", "writes > 1 MB"]
    cells = [
        [
            row["module"],
            row["cache_buffer"],
            row["known_trip_count"] or "-",
            row["launches"],
            row["kernels_in_calls"],
            row["instructions"].get("dot", 0) + row["instructions"].get("custom-call", 0),
            row["instructions"].get("fusion", 0),
            len(row["copies"]),
            f"{row['copy_bytes'] / 1e6:.2f}",
            f"{row['written_bytes'] / 1e6:.2f}",
            len(row["large_writes"]),
        ]
        for row in rows
    ]
    return format_table(headers, cells)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dump_dir", help="the folder given to XLA_FLAGS=--xla_dump_to=...")
    parser.add_argument("--modules", default=DECODE_MODULES,
                        help="regular expression of the module names to count")
    parser.add_argument("--output", help="JSON file for the census (default: print only)")
    args = parser.parse_args(argv)
    rows = census(args.dump_dir, args.modules)
    print(table(rows))
    if args.output:
        print(f"\nWrote {write_json(args.output, {'dump_dir': args.dump_dir, 'loops': rows})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
