#!/usr/bin/env python3
"""Fails when the modules of a crate import each other in a circle.

    scripts/module-cycles.py [CRATE_SRC_DIR ...]    (default: every crates/*/src)

A module's edges are the `crate::<module>` paths in its non-test code (comments and
`#[cfg(test)]` parts left out). Crates are layered by Cargo, which refuses circles;
this keeps the modules inside each crate layered too (docs/architecture.md).
"""
import os
import re
import sys


def modules(root):
    mods = {f[:-3] for f in os.listdir(root) if f.endswith(".rs") and f not in ("lib.rs", "main.rs")}
    mods |= {d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))}
    return mods


def files_of(root, mod):
    out = [p for p in [os.path.join(root, mod + ".rs")] if os.path.exists(p)]
    for dirpath, _, names in os.walk(os.path.join(root, mod)):
        out += [os.path.join(dirpath, n) for n in names if n.endswith(".rs")]
    return out


def graph(root):
    mods = modules(root)
    edges = {m: set() for m in mods}
    for m in mods:
        for path in files_of(root, m):
            text = open(path, encoding="utf-8").read().split("#[cfg(test)]")[0]
            text = re.sub(r"//.*", "", text)
            names = re.findall(r"crate::(\w+)", text)
            for group in re.findall(r"crate::\{([^}]*)\}", text, re.S):
                names += re.findall(r"\b(\w+)", group)
            edges[m] |= {n for n in names if n in mods and n != m}
    return edges


def circles(edges):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
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
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    roots = sys.argv[1:] or sorted(
        os.path.join(here, "..", "crates", c, "src") for c in os.listdir(os.path.join(here, "..", "crates"))
    )
    bad = 0
    for root in roots:
        for comp in circles(graph(root)):
            bad += 1
            crate = os.path.basename(os.path.dirname(os.path.normpath(root)))
            print(f"{crate}: modules import each other in a circle: {', '.join(comp)}", file=sys.stderr)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
