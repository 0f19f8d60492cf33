#!/usr/bin/env python3
"""Module cycles between the top-level modules of each crate.

For every crate (the root package's src/ and each workspace member's src/), an edge A -> B is a
`crate::B` path written in a file under module A, or a `super::B` path in a file directly below the
crate root. Nested modules fold into their top-level module (crate::exec::copy -> exec), so the graph
is the one a newcomer reads in docs/ARCHITECTURE.md. Strongly connected components with more than
one module are cycles: they are printed and the script exits 1.

  scripts/module-cycles.py            # check every crate (top level, then one level down), exit 1
  scripts/module-cycles.py --graph    # print each crate's module edges (for docs/ARCHITECTURE.md)
  scripts/module-cycles.py --deep     # same, at the second level too (crate::exec::copy)

An allow file (scripts/module-cycles.allow: `crate: a b c  # reason`) names a cycle the crate keeps on
purpose; none is listed today.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def crates():
    """The root package and every workspace member, as Cargo.toml lists them."""
    with open(os.path.join(ROOT, "Cargo.toml"), encoding="utf-8") as f:
        text = f.read()
    members = re.search(r"^members\s*=\s*\[([^\]]*)\]", text, re.M)
    names = re.findall(r'"([^"]+)"', members.group(1)) if members else []
    return ["."] + names
PATH_RE = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
GROUP_RE = re.compile(r"\b(crate|super)::\{([^}]*)\}", re.S)


def strip_comments(text):
    """Drops // and /* */ comments and string literals so a path in prose is not an edge."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"'(?:\\.|[^'\\])'", "' '", text)  # char literals, '"' among them
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    return re.sub(r"//[^\n]*", "", text)


def strip_tests(text):
    """Drops `#[cfg(test)] mod ... { ... }` blocks: test modules may reach anywhere."""
    out, i = [], 0
    while True:
        m = re.search(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{", text[i:])
        if not m:
            out.append(text[i:])
            return "".join(out)
        start = i + m.start()
        out.append(text[i:start])
        depth, j = 0, i + m.end() - 1
        while j < len(text):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        i = j + 1


def module_path(src, path):
    """The module path of a file: src/a/b.rs and src/a/b/mod.rs are ['a', 'b']; roots are []."""
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    if rel in (["lib"], ["main"]):
        return []
    return rel


def targets(kind, tail, modpath):
    """Absolute module path named by `crate::x::y` or `super::x` written inside module `modpath`."""
    parts = tail.strip(":").split("::")
    if kind == "crate":
        return parts
    base = modpath[:-1]
    while parts and parts[0] == "super":
        base, parts = base[:-1], parts[1:]
    return base + parts


def edges_of(crate, depth, modules):
    src = os.path.join(ROOT, crate, "src")
    edges = {}
    for dirpath, _, files in os.walk(src):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(dirpath, name)
            modpath = module_path(src, path)
            if not modpath or modpath[0] == "bin":
                continue
            with open(path, encoding="utf-8") as f:
                text = strip_tests(strip_comments(f.read()))
            found = []
            for m in GROUP_RE.finditer(text):
                for item in re.split(r",", m.group(2)):
                    item = item.strip().split(" as ")[0].strip()
                    if item:
                        found.append(targets(m.group(1), "::" + item.split("::{")[0], modpath))
            for m in PATH_RE.finditer(text):
                found.append(targets(m.group(1), m.group(2), modpath))
            here = tuple(modpath[:depth])
            for target in found:
                # The longest prefix that is a module file: `crate::cmd::open_store` is cmd's.
                there = next(
                    (tuple(target[:n]) for n in range(depth, 0, -1) if tuple(target[:n]) in modules),
                    None,
                )
                if there is None:
                    continue
                if there != here and there[: len(here)] != here and here[: len(there)] != there:
                    edges.setdefault(here, set()).add(there)
    return edges


def module_files(crate):
    """Every module that has a file of its own, as a path tuple (`('exec', 'copy')`)."""
    src = os.path.join(ROOT, crate, "src")
    found = set()
    for dirpath, _, files in os.walk(src):
        for name in files:
            if name.endswith(".rs"):
                path = module_path(src, os.path.join(dirpath, name))
                if path and path[0] != "bin":
                    found.add(tuple(path))
    return found


def sccs(edges):
    """Tarjan's strongly connected components, iterative enough for these small graphs."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    nodes = set(edges) | {t for ts in edges.values() for t in ts}

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
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

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def allowed():
    path = os.path.join(ROOT, "scripts", "module-cycles.allow")
    allow = set()
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.split("#")[0].strip()
                if line:
                    crate, mods = line.split(":", 1)
                    allow.add((crate.strip(), tuple(sorted(mods.split()))))
    return allow


def main():
    graph = "--graph" in sys.argv
    depths = [2] if "--deep" in sys.argv else [1] if graph else [1, 2]
    allow, bad = allowed(), 0
    for crate, depth in ((c, d) for c in crates() for d in depths):
        if not os.path.isdir(os.path.join(ROOT, crate, "src")):
            continue
        name = "strata" if crate == "." else crate
        edges = edges_of(crate, depth, module_files(crate))
        if graph:
            print(f"{name}:", flush=True)
            for here in sorted(edges):
                print(f"  {'::'.join(here)} -> {', '.join('::'.join(t) for t in sorted(edges[here]))}")
        for comp in sccs(edges):
            mods = tuple("::".join(c) for c in comp)
            if (name, mods) in allow or (depth > 1 and len({m.split("::")[0] for m in mods}) > 1):
                continue
            bad += 1
            print(f"cycle in {name}: {' <-> '.join(mods)}")
            for a in comp:
                for b in sorted(edges.get(a, ())):
                    if b in comp:
                        print(f"    {'::'.join(a)} -> {'::'.join(b)}")
    if bad:
        sys.stdout.flush()
        print(f"{bad} module cycle(s); break them (move shared types into a leaf module)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
