"""Function sizes in the package: median, p90 and the largest, in lines.

    python scripts/function_sizes.py [PATH ...]     (default: tiktok_async)

A function's size is its line span (`end_lineno - lineno + 1`, decorators and docstring
included), nested functions counted on their own as well as inside their parent.
"""

from __future__ import annotations

import ast
import statistics
import sys
from pathlib import Path


def function_sizes(root: Path) -> list[tuple[int, str]]:
    """`(lines, "file:function")` for every function under `root`."""
    sizes = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                end = node.end_lineno or node.lineno
                sizes.append((end - node.lineno + 1, f"{path}:{node.name}"))
    return sizes


def percentile(values: list[int], share: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main(argv: list[str]) -> None:
    for root in argv or ["tiktok_async"]:
        sizes = function_sizes(Path(root))
        lines = [size for size, _ in sizes]
        print(f"{root}: {len(lines)} functions, median {statistics.median(lines):g}, "
              f"p90 {percentile(lines, 0.9)}, max {max(lines)} lines")
        for size, name in sorted(sizes, reverse=True)[:5]:
            print(f"  {size:4d}  {name}")


if __name__ == "__main__":
    main(sys.argv[1:])
