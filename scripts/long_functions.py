#!/usr/bin/env python3
"""The longest functions of src/ (production code: `#[cfg(test)]` modules and the files they
load are left out), longest first, as `lines path:line name`.

Usage: python3 scripts/long_functions.py [N] [--max LINES]
N: how many to print (default 5). --max: exit 1 when any is longer (the project's limit is
100 lines).
"""

import argparse
import re
import sys

from check_layers import SRC, Crate, matching_brace, rel

FN = re.compile(r"\bfn\s+([A-Za-z_][A-Za-z0-9_]*)")


def functions(crate: Crate):
    """(lines, path:line, name) of every function with a body."""
    out = []
    for path, code in crate.code.items():
        for m in FN.finditer(code):
            # The body opens at the first `{` after the signature, unless a `;` ends it first
            # (a trait method without a default body).
            brace, semi = code.find("{", m.end()), code.find(";", m.end())
            if brace < 0 or (0 <= semi < brace and "where" not in code[m.end() : semi]):
                continue
            end = matching_brace(code, brace)
            start_line = code.count("\n", 0, m.start()) + 1
            lines = code.count("\n", m.start(), end) + 1
            out.append((lines, f"{rel(path)}:{start_line}", m.group(1)))
    return sorted(out, key=lambda f: (-f[0], f[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=5)
    ap.add_argument("--max", type=int, help="fail when a function is longer")
    args = ap.parse_args()
    fns = functions(Crate())
    for lines, where, name in fns[: args.n]:
        print(f"{lines:4} {where} {name}")
    if args.max is not None and fns and fns[0][0] > args.max:
        over = [f for f in fns if f[0] > args.max]
        print(f"{len(over)} function(s) over {args.max} lines", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(SRC.parent / "scripts"))
    sys.exit(main())
