#!/usr/bin/env python3
"""A MagicFS generator plugin: writes an index of the files next to the one
being generated (name, size, first line of small texts).

Register it when mounting:

    magicfs mount /mnt/m --plugin summary=examples/plugins/summary.py

and choose it for a file (or every empty file below a directory):

    touch /mnt/m/notes/INDEX
    setfattr -n user.magic.generator -v summary /mnt/m/notes/INDEX
    cat /mnt/m/notes/INDEX

Protocol (docs/generators.md): one JSON request on standard input, the
file's content (UTF-8 text) on standard output, exit status 0. Anything else
- a non-zero exit, non-text output, running past --plugin-timeout - leaves
the file empty, and the reason appears in .magic/status.
"""
import json
import sys


def main() -> int:
    req = json.load(sys.stdin)
    out = [f"# Index of {req['path'].rsplit('/', 1)[0] or '/'}", ""]
    if req.get("prompt"):
        out += [req["prompt"], ""]
    for s in req["siblings"]:
        first = (s.get("content") or "").strip().splitlines()[:1]
        line = f"- {s['name']} ({s['size']} bytes)"
        if first:
            line += f": {first[0]}"
        out.append(line)
    if not req["siblings"]:
        out.append("(no other files)")
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
