"""Where each thread of the server spent its time, from a raw py-spy profile (bench/run.py --py-spy FILE.txt).

    .venv/bin/python bench/pyspy_summary.py bench/out/profile.txt [--thread batchline-worker] [--top 12]

Samples are wall-clock (py-spy --idle): a thread waiting shows as its waiting frame. Each stack is keyed by its
two deepest batchline frames and, where it is not batchline's, its leaf frame.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path


def summarise(path: Path, thread_filter: str | None, top: int) -> None:
    per_thread: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for raw in path.read_text().splitlines():
        stack, _, count = raw.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        thread = frames[0]
        if thread_filter and thread_filter not in thread:
            continue
        ours = [f.split(" (")[0] for f in frames if "batchline/" in f]
        key = " > ".join(ours[-2:])
        if "batchline/" not in frames[-1]:
            key = f"{key} | {frames[-1]}" if key else frames[-1]
        per_thread[thread][key] += int(count)
    ranked = sorted(per_thread.items(), key=lambda kv: -sum(kv[1].values()))
    for thread, counter in ranked:
        total = sum(counter.values())
        print(f"{thread}: {total} samples")
        for key, count in counter.most_common(top):
            print(f"  {count:7d} {100 * count / total:5.1f}%  {key[:200]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile", type=Path, help="raw (collapsed) py-spy output, recorded with --threads")
    parser.add_argument("--thread", help="only threads whose name contains this, e.g. batchline-worker or fetch")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args(argv)
    summarise(args.profile, args.thread, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
