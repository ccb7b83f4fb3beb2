"""Where the time goes in a py-spy profile taken with `--py-spy FILE` (collapsed stacks).

    .venv/bin/python bench/profile_summary.py FILE [--top 25] [--under FUNCTION]

Prints the share of samples in which each function is on the stack (inclusive) and at the
top of it (self), by `function (file)` without line numbers. `--under` keeps only the
stacks passing through a function whose name contains the given text.
"""

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"^(.*) (\d+)$")
_FRAME = re.compile(r"^(.*) \((.*?)(?::\d+)?\)$")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--under", help="only stacks through a function containing this")
    args = parser.parse_args()

    inclusive: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    total = 0
    for line in args.file.read_text(encoding="utf-8", errors="replace").splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        frames = [_name(f) for f in match.group(1).split(";") if not f.startswith("process ")]
        if args.under and not any(args.under in f for f in frames):
            continue
        count = int(match.group(2))
        total += count
        for name in set(frames):
            inclusive[name] += count
        if frames:
            self_time[frames[-1]] += count
    if not total:
        print("no samples")
        return
    print(f"{total} samples{f' through {args.under}' if args.under else ''}")
    for title, counter in (("inclusive", inclusive), ("self", self_time)):
        print(f"\n-- {title} --")
        for name, count in counter.most_common(args.top):
            print(f"{100 * count / total:6.1f}%  {name}")


def _name(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    function, path = match.groups()
    return f"{function} ({path})"


if __name__ == "__main__":
    main()
