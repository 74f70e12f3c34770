#!/usr/bin/env python3
"""Writes a toy preference set for trying DPO on the bundled corpus.

Each pair: prompt = a line of the corpus (plus newline), chosen = the first
24 characters of the next line, rejected = those characters reversed. A model
tuned on it should come to prefer real continuations over scrambled ones on
held-out pairs, which makes it a quick, checkable DPO demonstration (not a
real preference dataset).

Usage: python3 scripts/make_preference_pairs.py CORPUS OUT.jsonl [N]
"""
import json
import sys


def main() -> None:
    corpus, out = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    lines = open(corpus, encoding="utf-8").read().split("\n")
    made = 0
    with open(out, "w", encoding="utf-8") as f:
        for prev, line in zip(lines, lines[1:]):
            if made >= n:
                break
            if len(prev) >= 8 and len(line) >= 24:
                chosen = line[:24]
                pair = {"prompt": prev + "\n", "chosen": chosen, "rejected": chosen[::-1]}
                f.write(json.dumps(pair) + "\n")
                made += 1


if __name__ == "__main__":
    main()
