#!/usr/bin/env python3
"""Writes a toy prompt set for trying GRPO on the bundled corpus.

Each prompt is the first 12 characters of a corpus line of at least 20, and
its target the next character, so `--reward exact` rewards continuing the
line as the play does (`regex:` and `length:` rewards ignore the target). A
quick, checkable GRPO demonstration, not a real task.

Usage: python3 scripts/make_grpo_prompts.py CORPUS OUT.jsonl [N]
"""
import json
import sys


def main() -> None:
    corpus, out = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    made = 0
    with open(out, "w", encoding="utf-8") as f:
        for line in open(corpus, encoding="utf-8").read().split("\n"):
            if made >= n:
                break
            if len(line) >= 20:
                f.write(json.dumps({"prompt": line[:12], "target": line[12]}) + "\n")
                made += 1


if __name__ == "__main__":
    main()
