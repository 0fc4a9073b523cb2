#!/usr/bin/env python3
"""Fail on an import cycle between the files of src/ (issue 19: a layering a reader can follow).

Usage: python3 scripts/check_layers.py [--allow FILE] [--list] [--graph]

Every file of src/ is a node; file A depends on file B when A's production code names a path
that resolves into B: `use crate::…`, `use super::…`, `use self::…`, a `use` of a child
module, and the same paths written inline (`crate::shell::metrics::record(…)`, or
`metrics::record(…)` after `use crate::shell::metrics;`). Declaring a child (`mod x;`) is not
a dependency, nor are comments, strings, or `#[cfg(test)]` code (test modules may reach
anywhere). `src/main.rs` is another crate and is skipped.

A cycle is a strongly connected component of that graph with more than one file. Each is
printed as its files in order, e.g. `src/a.rs -> src/b.rs -> src/a.rs`, and named by its
sorted files joined with ` | ` (the key for the allow-list).

--allow FILE: known cycles, one key per line (`#` starts a comment). A listed cycle is
reported but does not fail; any other cycle fails (exit 1), and so does a listed cycle that
no longer exists (the list must shrink with the code). Without --allow, any cycle fails.
--list prints each file's dependencies; --graph prints the graph as mermaid.

Modules: the same graph with files collapsed into modules (`core`, `workflow`, `bench`, `cli`,
and each file or folder directly under `src/shell/`, e.g. `shell/engine`, `shell/store`) must
have no cycle either, so that "nothing below the engine imports it" holds for folders, not
only for files. `--modules` prints that graph's transitive reduction (each module's arrows
to the modules it needs that nothing else it needs already needs) as mermaid;
`--check-doc FILE` fails when FILE's block between `<!-- layers:begin -->` and
`<!-- layers:end -->` is not that graph (`--write-doc FILE` rewrites it).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip_comments_and_strings(text: str) -> str:
    """Blank out comments, string and char literals, keeping line breaks and braces' places."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:]) and not re.match(r"[A-Za-z0-9_]", text[i - 1 : i] or " "):
            hashes = re.match(r"r(#*)\"", text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            j = n if end < 0 else end + 1 + len(hashes)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "'":
            # A char literal ('a', '\n', '\u{1F600}') or a lifetime ('a): only the former closes.
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", text[i:])
            if m:
                out.append(" " * len(m.group(0)))
                i += len(m.group(0))
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def module_of(path: Path) -> tuple[str, ...]:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return tuple(parts)


def matching_brace(text: str, open_at: int) -> int:
    depth = 0
    for j in range(open_at, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return len(text)


CFG_TEST = re.compile(r"#\[cfg\(test\)\]\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*([;{])")
MOD_DECL = re.compile(r"(?:#\[path\s*=\s*\"[^\"]*\"\]\s*)?(?:pub(?:\([^)]*\))?\s+)?\bmod\s+(" + IDENT + r")\s*([;{])")


def drop_test_code(code: str) -> tuple[str, set[str]]:
    """Blank out `#[cfg(test)] mod x { … }` bodies; return the names of `#[cfg(test)] mod x;`."""
    test_files = set()
    while True:
        m = CFG_TEST.search(code)
        if not m:
            return code, test_files
        if m.group(2) == ";":
            test_files.add(m.group(1))
            end = m.end()
        else:
            end = matching_brace(code, m.end() - 1) + 1
        code = code[: m.start()] + re.sub(r"[^\n]", " ", code[m.start() : end]) + code[end:]


class Crate:
    def __init__(self) -> None:
        self.files: dict[tuple[str, ...], Path] = {}
        self.code: dict[Path, str] = {}
        self.inline: dict[tuple[str, ...], Path] = {}  # inline `mod x { … }` -> its file
        self.children: dict[tuple[str, ...], set[str]] = {}
        self.load()

    def load(self) -> None:
        skipped: set[Path] = set()
        for path in sorted(SRC.rglob("*.rs")):
            if path == SRC / "main.rs":
                continue
            code, test_files = drop_test_code(strip_comments_and_strings(path.read_text()))
            mod = module_of(path)
            for name in test_files:
                for cand in self.child_files(path, name):
                    skipped.add(cand)
            self.code[path] = code
            self.files[mod] = path
            kids = self.children.setdefault(mod, set())
            for m in MOD_DECL.finditer(code):
                kids.add(m.group(1))
                if m.group(2) == "{":
                    self.inline[mod + (m.group(1),)] = path
        for p in skipped:
            self.code.pop(p, None)
            self.files = {k: v for k, v in self.files.items() if v != p}

    @staticmethod
    def child_files(parent: Path, name: str) -> list[Path]:
        base = parent.parent if parent.name in ("mod.rs", "lib.rs") else parent.with_suffix("")
        text = parent.read_text()
        m = re.search(r"#\[path\s*=\s*\"([^\"]+)\"\]\s*(?:#\[[^\]]*\]\s*)*mod\s+" + name + r"\s*;", text)
        if m:
            return [parent.parent / m.group(1)]
        m = re.search(r"#\[cfg\(test\)\]\s*#\[path\s*=\s*\"([^\"]+)\"\]", text)
        return [base / f"{name}.rs", base / name / "mod.rs"] + ([parent.parent / m.group(1)] if m else [])

    def file_of(self, segs: tuple[str, ...]) -> Path | None:
        """The file that holds the longest module prefix of an absolute path."""
        for k in range(len(segs), -1, -1):
            pre = segs[:k]
            if pre in self.files:
                return self.files[pre]
            if pre in self.inline:
                return self.inline[pre]
        return None

    def is_module(self, segs: tuple[str, ...]) -> bool:
        return segs in self.files or segs in self.inline


def expand_use_tree(tree: str) -> list[list[str]]:
    """`a::{b, c::{d, self}, e}` -> [[a,b],[a,c,d],[a,c],[a,e]] (aliases removed before)."""
    tree = re.sub(r"\s+", "", tree)

    def split_top(s: str) -> list[str]:
        parts, depth, cur = [], 0, ""
        for ch in s:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        if cur:
            parts.append(cur)
        return parts

    def walk(prefix: list[str], s: str) -> list[list[str]]:
        brace = s.find("{")
        if brace < 0:
            return [prefix + [x for x in s.split("::") if x]]
        head = [x for x in s[:brace].split("::") if x]
        inner = s[brace + 1 : s.rfind("}")]
        out = []
        for part in split_top(inner):
            if part == "self":
                out.append(prefix + head)
            else:
                out.extend(walk(prefix + head, part))
        return out

    return walk([], tree)


USE_STMT = re.compile(r"\buse\s+([^;]+);")
AS_ALIAS = re.compile(r"\b(" + IDENT + r")\s+as\s+(" + IDENT + r")\b")


def resolve(crate: Crate, cur: tuple[str, ...], segs: list[str]) -> tuple[str, ...] | None:
    """An absolute path for `segs` written in module `cur`, or None (an external crate)."""
    if not segs:
        return None
    if segs[0] == "crate":
        return tuple(segs[1:])
    if segs[0] == "self":
        return cur + tuple(segs[1:])
    if segs[0] == "super":
        base = list(cur)
        i = 0
        while i < len(segs) and segs[i] == "super":
            base = base[:-1]
            i += 1
        return tuple(base) + tuple(segs[i:])
    if segs[0] in crate.children.get(cur, set()):
        return cur + tuple(segs)
    return None


def dependencies(crate: Crate, path: Path) -> set[Path]:
    code = crate.code[path]
    cur = module_of(path)
    deps: set[Path] = set()
    aliases: dict[str, tuple[str, ...]] = {}

    def add(absolute: tuple[str, ...] | None) -> None:
        if absolute is None:
            return
        f = crate.file_of(absolute)
        if f is not None and f != path:
            deps.add(f)

    for m in USE_STMT.finditer(code):
        raw = m.group(1)
        # `x as y`: remember y, then drop the alias for the path expansion.
        renamed = {a: b for a, b in AS_ALIAS.findall(raw)}
        tree = AS_ALIAS.sub(lambda mm: mm.group(1), raw)
        for segs in expand_use_tree(tree):
            if segs and segs[-1] == "*":
                segs = segs[:-1]
            absolute = resolve(crate, cur, segs)
            add(absolute)
            if absolute is not None and crate.is_module(absolute) and segs:
                aliases[renamed.get(segs[-1], segs[-1])] = absolute
    # Inline paths: crate::…, super::…, self::…, child::…, alias::… (outside `use`, read above).
    body = USE_STMT.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), code)
    for m in re.finditer(r"(?<![A-Za-z0-9_:])((?:" + IDENT + r"::)+" + IDENT + r")", body):
        segs = m.group(1).split("::")
        if segs[0] in ("crate", "self", "super") or segs[0] in crate.children.get(cur, set()):
            add(resolve(crate, cur, segs))
        elif segs[0] in aliases:
            add(aliases[segs[0]] + tuple(segs[1:]))
    # The parent module of `cur` is not a dependency unless named (super:: above).
    return deps


def strongly_connected(graph: dict[Path, set[Path]]) -> list[list[Path]]:
    index: dict[Path, int] = {}
    low: dict[Path, int] = {}
    stack: list[Path] = []
    on: set[Path] = set()
    out: list[list[Path]] = []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v: Path) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def a_cycle(graph: dict[Path, set[Path]], comp: list[Path]) -> list[Path]:
    """One closed walk through the component, for the message (a shortest cycle from its
    first file)."""
    members = set(comp)
    start = comp[0]
    prev: dict[Path, Path] = {}
    queue = [start]
    seen = {start}
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & members):
            if w == start:
                walk = [v]
                while walk[-1] != start:
                    walk.append(prev[walk[-1]])
                return list(reversed(walk)) + [start]
            if w not in seen:
                seen.add(w)
                prev[w] = v
                queue.append(w)
    return comp + [start]


def rel(p: Path) -> str:
    return str(p.relative_to(ROOT))


def edge_line(a: Path, b: Path) -> str:
    return f"{rel(a)} -> {rel(b)}"


def read_allowed(path: Path) -> set[str]:
    allowed = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            allowed.add(re.sub(r"\s*->\s*", " -> ", line))
    return allowed


def allow_list(graph: dict[Path, set[Path]], comps: list[list[Path]]) -> str:
    out = [
        "# Import cycles between files of src/ that are known and accepted for now: each line is",
        "# one import (file -> the file it imports from) that lies on a cycle. scripts/check_layers.py",
        "# fails on an import on a cycle that is not listed here (a new cycle), and on a listed",
        "# one that is no longer on a cycle (delete the line). Regenerate with --write-allow.",
    ]
    for comp in comps:
        members = set(comp)
        walk = " -> ".join(rel(p) for p in a_cycle(graph, comp))
        out.append("")
        out.append(f"# {len(comp)} files, e.g. {walk}")
        for a in comp:
            for b in sorted(graph[a] & members):
                out.append(edge_line(a, b))
    return "\n".join(out) + "\n"


def module_name(p: Path) -> str:
    parts = p.relative_to(SRC).with_suffix("").parts
    if parts == ("shell", "mod"):
        return "shell"  # the command dispatcher, above every shell module it runs
    if parts[0] == "shell" and len(parts) > 1:
        return "shell/" + parts[1]
    return parts[0]


def module_graph(graph: dict[Path, set[Path]]) -> dict[str, set[str]]:
    """Files collapsed into modules. `lib.rs` is left out: files reach it only for the
    `#[macro_export]` SQL macros, which live at the crate root whoever defines them."""
    mods: dict[str, set[str]] = {}
    for a, deps in graph.items():
        ma = module_name(a)
        if ma == "lib":
            continue
        mods.setdefault(ma, set())
        for b in deps:
            mb = module_name(b)
            if mb not in (ma, "lib"):
                mods[ma].add(mb)
                mods.setdefault(mb, set())
    return mods


def reduction(mods: dict[str, set[str]]) -> dict[str, set[str]]:
    """The transitive reduction of an acyclic module graph: a -> b is kept unless b is
    reachable from another of a's dependencies."""
    reach: dict[str, set[str]] = {}

    def below(m: str) -> set[str]:
        if m not in reach:
            reach[m] = set()
            for d in mods[m]:
                reach[m] |= {d} | below(d)
        return reach[m]

    return {m: {d for d in deps if not any(d in below(o) for o in deps if o != d)} for m, deps in mods.items()}


def mermaid(mods: dict[str, set[str]]) -> str:
    ident = lambda m: m.replace("/", "_")  # noqa: E731
    lines = ["```mermaid", "flowchart TD"]
    for m in sorted(mods):
        for d in sorted(mods[m]):
            lines.append(f'    {ident(m)}["{m}"] --> {ident(d)}["{d}"]')
    lines.append("```")
    return "\n".join(lines) + "\n"


DOC_BEGIN, DOC_END = "<!-- layers:begin -->\n", "<!-- layers:end -->"


def doc_block(path: Path) -> tuple[str, str, str]:
    text = path.read_text()
    i, j = text.find(DOC_BEGIN), text.find(DOC_END)
    if i < 0 or j < i:
        raise SystemExit(f"{path}: no {DOC_BEGIN.strip()} … {DOC_END} block")
    return text[: i + len(DOC_BEGIN)], text[i + len(DOC_BEGIN) : j], text[j:]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--allow", type=Path, help="file of known imports on cycles")
    ap.add_argument("--write-allow", type=Path, help="write today's cycles to this file")
    ap.add_argument("--list", action="store_true", help="print each file's dependencies")
    ap.add_argument("--graph", action="store_true", help="print the file graph as mermaid")
    ap.add_argument("--modules", action="store_true", help="print the module layering as mermaid")
    ap.add_argument("--check-doc", type=Path, help="fail unless this file shows the module layering")
    ap.add_argument("--write-doc", type=Path, help="rewrite this file's module layering block")
    args = ap.parse_args()

    crate = Crate()
    graph = {p: dependencies(crate, p) for p in crate.code}
    if args.list:
        for p in sorted(graph):
            print(f"{rel(p)}: {' '.join(rel(d) for d in sorted(graph[p]))}")
    if args.graph:
        print("graph TD")
        for p in sorted(graph):
            for d in sorted(graph[p]):
                print(f"  {rel(p)} --> {rel(d)}")
    comps = strongly_connected(graph)
    if args.write_allow:
        args.write_allow.write_text(allow_list(graph, comps))
    allowed = read_allowed(args.allow) if args.allow else set()

    failed = False
    on_cycle: set[str] = set()
    for comp in comps:
        members = set(comp)
        walk = " -> ".join(rel(p) for p in a_cycle(graph, comp))
        new = []
        for a in comp:
            for b in sorted(graph[a] & members):
                on_cycle.add(edge_line(a, b))
                if edge_line(a, b) not in allowed:
                    new.append((a, b))
        if not new:
            print(f"allowed cycle ({len(comp)} files), e.g. {walk}")
            continue
        failed = True
        print(f"IMPORT CYCLE ({len(comp)} files), e.g. {walk}")
        for a, b in new:
            back = a_path(graph, b, a, members)
            print(f"  new: {edge_line(a, b)}, and back: {' -> '.join(rel(p) for p in back)}")
    for line in sorted(allowed - on_cycle):
        print(f"STALE allow-list line (no longer on a cycle; delete it): {line}")
        failed = True
    mods = module_graph(graph)
    mod_comps = strongly_connected(mods)  # type: ignore[arg-type]
    for comp in mod_comps:
        failed = True
        print(f"MODULE CYCLE: {' -> '.join(map(str, a_cycle(mods, comp)))}")  # type: ignore[arg-type]
    if not mod_comps:
        layers = mermaid(reduction(mods))
        if args.modules:
            print(layers, end="")
        if args.write_doc:
            before, _, after = doc_block(args.write_doc)
            args.write_doc.write_text(before + layers + after)
        if args.check_doc:
            _, shown, _ = doc_block(args.check_doc)
            if shown != layers:
                failed = True
                print(f"{args.check_doc}: the module layering shown is not the code's "
                      f"(rewrite it with --write-doc {args.check_doc})")
    edges = sum(len(d) for d in graph.values())
    print(f"{len(graph)} files, {edges} imports between them, {len(comps)} cycles "
          f"({len(on_cycle)} imports on cycles, {len(on_cycle & allowed)} of them allowed); "
          f"{len(mods)} modules, {len(mod_comps)} module cycles")
    return 1 if failed else 0


def a_path(graph: dict[Path, set[Path]], src: Path, dst: Path, members: set[Path]) -> list[Path]:
    """A shortest import path from src to dst inside one component."""
    prev: dict[Path, Path] = {}
    queue, seen = [src], {src}
    while queue:
        v = queue.pop(0)
        if v == dst:
            walk = [v]
            while walk[-1] != src:
                walk.append(prev[walk[-1]])
            return list(reversed(walk))
        for w in sorted(graph[v] & members):
            if w not in seen:
                seen.add(w)
                prev[w] = v
                queue.append(w)
    return [src, dst]


if __name__ == "__main__":
    sys.exit(main())
