#!/usr/bin/env python3
"""Fails when the modules of a crate import each other in a circle.

Usage: check_cycles.py [CRATE_DIR ...]  (default: every workspace member)

Each `.rs` file under a crate's `src/` is a module (`a.rs` and `a/mod.rs`
are `a`). An edge `a -> b` is a path in `a` that names an item of `b`:
`use crate::b::…`, `super::b::…`, `self::b::…`, or the same paths written in
code. A path is resolved to the deepest module file it names, so
`crate::cache::chunks::ChunkCache` points at `cache/chunks.rs`, and
`crate::cache::ChunkCache` at `cache/mod.rs`. A module and the modules
inside it are one unit: a parent re-exporting its children and a child
using its parent's items is how Rust folders are built, not a cycle, so
edges between a module and its own ancestors or descendants are left out.

Every strongly connected set of two or more modules is printed with the
edges that tie it, and the exit code is 1. Tests (`tests/`, `benches/`,
`#[cfg(test)]` modules at the end of a file) are not read.
"""

import re
import sys
import tomllib
from pathlib import Path

PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE_GROUP = re.compile(r"\buse\s+(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^;]*)\};", re.S)
TEST_MOD = re.compile(r"^#\[cfg\(test\)\]\s*\n\s*mod\s+\w+\s*\{", re.M)


def module_of(src: Path, file: Path) -> tuple:
    """The module path of `file` inside the crate rooted at `src`."""
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts.pop()
    return tuple(parts)


def without_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def group_paths(prefix: str, head: str, body: str):
    """The paths of a `use prefix::head::{a, b::c, d::{e, f}}` group."""
    depth, item, items = 0, "", []
    for ch in body:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            items.append(item)
            item = ""
        else:
            item += ch
    items.append(item)
    for it in items:
        it = re.sub(r"\s+", "", it)
        if not it or it == "self":
            yield prefix, head
            continue
        inner = re.match(r"([A-Za-z_][A-Za-z0-9_:]*?)::\{(.*)\}$", it)
        if inner:
            yield from group_paths(prefix, f"{head}::{inner.group(1)}", inner.group(2))
        else:
            name = re.match(r"[A-Za-z_][A-Za-z0-9_:]*", it)
            if name:
                yield prefix, f"{head}::{name.group(0)}"


def resolve(current: tuple, prefix: str, rest: str, modules: set):
    """The deepest module that `prefix` + `rest`, written in `current`, names.
    Inside `a/b.rs` and `a/b/mod.rs` alike, `super` is `a`."""
    if prefix == "crate":
        base = ()
    elif prefix == "self":
        base = current
    else:
        base = current[:-1]
    names = [n for n in rest.split("::") if n]
    while names and names[0] == "super":
        base = base[:-1]
        names.pop(0)
    target = base
    for name in names:
        if target + (name,) in modules:
            target = target + (name,)
        else:
            break
    return target if target in modules else None


def crate_graph(crate: Path) -> dict:
    src = crate / "src"
    files = {}
    for f in sorted(src.rglob("*.rs")):
        files[module_of(src, f)] = f
    modules = set(files)
    edges = {}
    for module, f in files.items():
        text = without_comments(f.read_text(encoding="utf-8"))
        test = TEST_MOD.search(text)
        if test:
            text = text[: test.start()]
        found = {}
        paths = [(m.group(1), m.group(2)) for m in PATH.finditer(text)]
        for g in USE_GROUP.finditer(text):
            paths.extend(group_paths(g.group(1), g.group(2), g.group(3)))
        for prefix, rest in paths:
            target = resolve(module, prefix, rest, modules)
            if target is None or target == module:
                continue
            related = target[: len(module)] == module or module[: len(target)] == target
            if related:
                continue
            names = rest.strip(":").split("::")
            found.setdefault(target, set()).add(names[-1])
        edges[module] = found
    return files, edges


def strongly_connected(edges: dict):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    sys.setrecursionlimit(10000)
    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def members(root: Path):
    manifest = tomllib.loads((root / "Cargo.toml").read_text(encoding="utf-8"))
    return [root / m for m in manifest.get("workspace", {}).get("members", [])]


def main(argv):
    root = Path(__file__).resolve().parent.parent
    crates = [Path(a) for a in argv] or members(root)
    cycles = 0
    for crate in crates:
        if not (crate / "src").is_dir():
            continue
        files, edges = crate_graph(crate)
        for group in strongly_connected(edges):
            cycles += 1
            print(f"import cycle in {crate}:")
            for a in group:
                for b, names in sorted(edges[a].items()):
                    if b in group:
                        print(f"  {files[a].relative_to(crate)} -> {files[b].relative_to(crate)}: {', '.join(sorted(names))}")
    if cycles:
        print(f"{cycles} import cycle(s) between modules", file=sys.stderr)
        return 1
    print(f"no import cycles between the modules of {len(crates)} crate(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
