"""Fails when files of a crate import each other in a loop (ARCHITECTURE.md).

Builds each crate's file-level import graph from its `src/`: an edge A -> B
when A names a path into B's module (`crate::`, `super::`, `self::`, or a
child module's name), in `use` lines or inline, test modules and comments
left out. A parent that re-exports a child counts as importing it, so a child
that reaches back for something defined in its parent closes a loop: such
shared types belong in a sibling file both import. Prints every strongly
connected group of files larger than one; exit 1 if any.

Usage: python3 .ci/import_cycles.py CRATE_SRC_DIR...
"""
import os
import re
import sys

PATH = re.compile(r"\b((?:crate|super|self)(?:::(?:super|[A-Za-z_][A-Za-z0-9_]*))+)")
GROUP = re.compile(r"\b((?:crate|super|self)(?:::(?:super|[A-Za-z_][A-Za-z0-9_]*))*)::\{([^}]*)\}")
CHILD = re.compile(r"(?<![:\w])([a-z_][a-z0-9_]*)::")
INLINE_MOD = re.compile(r"^\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+([a-z_][a-z0-9_]*)\s*\{", re.M)


def module_files(root):
    files = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(dirpath, name)
            parts = os.path.relpath(path, root)[:-3].split(os.sep)
            if parts[-1] in ("mod", "lib", "main"):
                parts = parts[:-1]
            files[tuple(parts)] = path
    return files


def resolve(files, module, segments):
    if segments[0] == "crate":
        base, rest = (), segments[1:]
    elif segments[0] == "super":
        base, rest = module, segments
        while rest and rest[0] == "super":
            base, rest = base[:-1], rest[1:]
    elif segments[0] == "self":
        base, rest = module, segments[1:]
    else:
        return None
    best = base if base in files else None
    for segment in rest:
        base = base + (segment,)
        if base not in files:
            break
        best = base
    return best


def strip(source):
    cut = source.find("#[cfg(test)]\nmod tests")
    if cut >= 0:
        source = source[:cut]
    return re.sub(r"//[^\n]*", "", source)


def sections(module, source):
    """(module, text) pieces: an inline `mod name {` starts a child module."""
    pieces, start, current = [], 0, module
    for m in INLINE_MOD.finditer(source):
        pieces.append((current, source[start:m.start()]))
        current, start = module + (m.group(1),), m.end()
    pieces.append((current, source[start:]))
    return pieces


def edges_of(files):
    edges = {}
    for module, path in files.items():
        targets = set()
        with open(path, encoding="utf-8") as f:
            source = strip(f.read())
        for scope, text in sections(module, source):
            for m in GROUP.finditer(text):
                for item in m.group(2).split(","):
                    item = item.strip().split(" ")[0]
                    if item:
                        target = resolve(files, scope, m.group(1).split("::") + [item.split("::")[0]])
                        if target is not None:
                            targets.add(target)
            for m in PATH.finditer(text):
                target = resolve(files, scope, m.group(1).split("::"))
                if target is not None:
                    targets.add(target)
            for m in CHILD.finditer(text):
                child = scope + (m.group(1),)
                if child in files:
                    targets.add(child)
        targets.discard(module)
        edges[module] = targets
    return edges


def cycles(edges):
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(group)

    sys.setrecursionlimit(10000)
    for v in list(edges):
        if v not in index:
            visit(v)
    return found


def main(roots):
    broken = False
    for root in roots:
        files = module_files(root)
        edges = edges_of(files)
        name = lambda m: "/".join(m) or "lib"
        for group in cycles(edges):
            broken = True
            print(f"import cycle in {root}:")
            for v in sorted(group):
                print("   ", name(v), "->", sorted(name(t) for t in edges[v] if t in group))
        print(f"{root}: {len(files)} files checked")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
