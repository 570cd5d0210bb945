#!/usr/bin/env python3
"""Replaces one section of bench/RESULTS.md (between <!-- NAME --> and <!-- /NAME -->) with stdin."""
import pathlib, sys

name = sys.argv[1]
path = pathlib.Path(__file__).with_name("RESULTS.md")
text = path.read_text() if path.exists() else "# Benchmark results\n\nEach section is written by the script it names; peers measured in the same run.\n"
body = sys.stdin.read().rstrip("\n")
start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
block = f"{start}\n{body}\n{end}"
if start in text and end in text:
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    text = before + block + after
else:
    text = text.rstrip("\n") + "\n\n" + block + "\n"
path.write_text(text)
