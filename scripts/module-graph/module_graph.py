#!/usr/bin/env python3
"""The module dependency graph of a Rust crate's source tree, and its cycles.

Usage: module_graph.py [--depth N] [--within M] [--forbid A=B,C]... [--fail-on-cycles]
                       [--edges] [--no-tests] [SRC_DIR]

SRC_DIR (default: src) holds the crate root (lib.rs, else main.rs). Every module file
(`a.rs`, `a/mod.rs`, `a/b.rs`, ...) is a module `a`, `a::b`; its edges are the modules its
code names through paths: `crate::a::b::Item`, `super::x`, `self::x`, a child module's name
(`child::f()`), and `#[macro_export]` macros (`crate::vlog!` is an edge to the module that
defines `vlog`). Comments and string literals are ignored. A path points at the longest
module prefix it names. --no-tests leaves out inline `#[cfg(test)]` modules. With --depth N, modules are collapsed to their first N path segments
(depth 1: the top-level modules) and edges inside one collapsed module are dropped.
--within M keeps only module M and the modules under it (with --depth 2 and M = core: the
graph inside the top-level module core). --forbid A,B=C,D (repeatable) is a layering rule:
no edge from A or B (or a module under them) to C or D (or a module under them).

Prints the nodes, the edges (with the first file:line that makes each), the strongly
connected components with more than one module (the cycles) and the edges that break a
--forbid rule. Exit status: 0, or 1 with --fail-on-cycles when there is a cycle or with a
--forbid rule that an edge breaks, 2 on bad input. No third-party packages.
"""

import argparse
import os
import re
import sys

ROOT = "crate"


def strip_comments_and_strings(text):
    """The text with comments, string and char literals blanked (newlines kept, so line
    numbers stay right). Handles nested block comments and raw strings."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
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
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 260]) and not _ident_char(text, i - 1):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            j = n if end < 0 else end + 1 + len(hashes)
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append("\n" * text.count("\n", i, j + 1))
            i = j + 1
        elif c == "'":
            # a char literal ('x', '\n', '\u{..}') or a lifetime ('a): only the former is blanked
            m = re.match(r"'(\\.[^']*|[^\\'])'", text[i:i + 12])
            if m:
                i += m.end()
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _ident_char(text, i):
    return i >= 0 and (text[i].isalnum() or text[i] == "_")


def module_files(src):
    """{module path: file} for every module file under `src` (the root is `crate`)."""
    mods = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), src)
            parts = rel[:-3].split(os.sep)
            if parts in (["lib"], ["main"]):
                key = ROOT
            elif parts[-1] == "mod":
                key = "::".join([ROOT] + parts[:-1])
            else:
                key = "::".join([ROOT] + parts)
            if len(parts) == 1 and parts[0] in ("lib", "main") and ROOT in mods:
                continue  # lib.rs wins over main.rs
            mods[key] = os.path.join(src, rel)
    return mods


PATH_RE = re.compile(r"(\$?crate|super|self)((?:\s*::\s*(?:super|[A-Za-z_][A-Za-z0-9_]*))*)")
GROUP_USE_RE = re.compile(r"\buse\s+((?:\$?crate|super|self)(?:\s*::\s*[A-Za-z_][A-Za-z0-9_]*)*)\s*::\s*\{")
MACRO_EXPORT_RE = re.compile(r"#\[macro_export\][\s\S]*?macro_rules!\s*([A-Za-z_][A-Za-z0-9_]*)")


def known_prefix(path, modules):
    """The longest prefix of `path` that is a module file (inline modules are not nodes)."""
    parts = path.split("::")
    while len(parts) > 1 and "::".join(parts) not in modules:
        parts.pop()
    return "::".join(parts)


def resolve(base, segments, modules, inline=()):
    """The longest module named by `base::segments`, seen from inside the inline modules
    `inline` of module `base` (for `super::`/`self::`)."""
    cur = base.split("::") + list(inline)
    for s in segments:
        if s == "super":
            if len(cur) > 1:
                cur = cur[:-1]
            continue
        if "::".join(cur + [s]) in modules:
            cur.append(s)
        else:
            break
    return known_prefix("::".join(cur), modules)


INLINE_MOD_RE = re.compile(r"\bmod\s+([A-Za-z_][A-Za-z0-9_]*)\s*\{")


def inline_modules(text):
    """`(start, end, name)` of every inline `mod name { ... }` block."""
    spans = []
    for mm in INLINE_MOD_RE.finditer(text):
        depth, j = 0, mm.end() - 1
        while j < len(text):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        spans.append((mm.start(), j, mm.group(1)))
    return spans


def group_items(text, start):
    """The top-level comma-separated paths of a `{...}` group starting at text[start] == '{'."""
    depth, j, items, cur = 0, start, [], []
    while j < len(text):
        c = text[j]
        if c == "{":
            depth += 1
            if depth > 1:
                cur.append(c)
        elif c == "}":
            depth -= 1
            if depth == 0:
                items.append("".join(cur))
                return items
            cur.append(c)
        elif c == "," and depth == 1:
            items.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        j += 1
    return items


def flatten_group(prefix, text, start):
    """The paths of a use group `{a::b, c as d, e::{f, self}, *}` at text[start] == '{'."""
    paths = []
    for item in group_items(text, start):
        item = item.strip()
        brace = item.find("{")
        if brace >= 0:
            sub = item[:brace].strip().rstrip(":").strip().replace(" ", "")
            inner_prefix = "::".join(x for x in (prefix, sub) if x)
            paths += flatten_group(inner_prefix, item, brace)
            continue
        item = re.split(r"\s+as\s+", item)[0].strip().replace(" ", "")
        if not item or item in ("self", "*"):
            paths.append(prefix)
        else:
            paths.append("::".join(x for x in (prefix, item) if x))
    return paths


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


CFG_TEST_MOD_RE = re.compile(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+[A-Za-z_][A-Za-z0-9_]*\s*\{")


def without_test_modules(text):
    """The text with the bodies of inline `#[cfg(test)] mod x { ... }` blanked (lines kept)."""
    out, last = [], 0
    for m in CFG_TEST_MOD_RE.finditer(text):
        if m.start() < last:
            continue
        depth, j = 0, m.end() - 1
        while j < len(text):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        out.append(text[last:m.start()])
        out.append("\n" * text.count("\n", m.start(), j + 1))
        last = j + 1
    out.append(text[last:])
    return "".join(out)


ROOT_REEXPORT_RE = re.compile(r"\bpub\s+use\s+(?!(?:crate|self|super)\b)([A-Za-z_][A-Za-z0-9_]*(?:\s*::\s*[A-Za-z_][A-Za-z0-9_]*)*)\s*(?:::\s*(\{[^}]*\})|\s+as\s+([A-Za-z_][A-Za-z0-9_]*))?\s*;")


def root_reexports(root_text):
    """Names the crate root re-exports from another crate (`pub use other::{a, b as c};`,
    `pub use other::x;`): each is a leaf node of its own (`crate::a` names the other crate's
    module, not the root's code)."""
    names = set()
    for m in ROOT_REEXPORT_RE.finditer(root_text):
        path, group, alias = m.group(1), m.group(2), m.group(3)
        if group:
            for item in group.strip("{}").split(","):
                item = item.strip()
                if item and item not in ("self", "*") and "::" not in item:
                    names.add(re.split(r"\s+as\s+", item)[-1].strip())
        elif alias:
            names.add(alias)
        else:
            names.add(path.replace(" ", "").split("::")[-1])
    return names


def build_graph(src, tests=True):
    modules = module_files(src)
    if ROOT not in modules:
        raise SystemExit(f"module_graph: no lib.rs or main.rs under {src}")
    texts = {m: strip_comments_and_strings(read(f)) for m, f in modules.items()}
    for name in root_reexports(texts[ROOT]):
        if ROOT + "::" + name not in modules:
            modules[ROOT + "::" + name] = modules[ROOT]  # a re-export: a node, no code
    if not tests:
        texts = {m: without_test_modules(t) for m, t in texts.items()}
    macros = {}
    for m, t in texts.items():
        for name in MACRO_EXPORT_RE.findall(t):
            macros[name] = m
    edges = {}  # (from, to) -> "file:line"

    def add(frm, to, pos, t):
        if to == frm:
            return
        line = t.count("\n", 0, pos) + 1
        edges.setdefault((frm, to), f"{os.path.relpath(modules[frm])}:{line}")

    for m, t in texts.items():
        children = {k.rsplit("::", 1)[1] for k in modules if k.rsplit("::", 1)[0] == m and k != m}

        spans = inline_modules(t)

        def target(head, tail, pos):
            segs = [s.strip() for s in tail.split("::") if s.strip()]
            if head in ("crate", "$crate"):
                if segs and ROOT + "::" + segs[0] not in modules and segs[0] in macros:
                    return macros[segs[0]]
                return resolve(ROOT, segs, modules)
            inline = [name for (a, b, name) in spans if a < pos < b]
            if head == "super":
                return resolve(m, ["super"] + segs, modules, inline)
            return resolve(m, segs, modules, inline)  # self

        for g in GROUP_USE_RE.finditer(t):
            head, _, rest = g.group(1).partition("::")
            prefix = rest.replace(" ", "")
            for path in flatten_group(prefix, t, g.end() - 1):
                add(m, target(head.strip(), path, g.start()), g.start(), t)
        for p in PATH_RE.finditer(t):
            if _ident_char(t, p.start() - 1) or (p.start() > 0 and t[p.start() - 1] == "$" and p.group(1)[0] != "$"):
                continue
            head = p.group(1)
            if not p.group(2).strip():
                continue  # `pub(crate)`, `pub(super)`, `self` the receiver: no path
            if re.search(r"\bin\s*$", t[max(0, p.start() - 8):p.start()]):
                continue  # `pub(in crate::a)`: a visibility, not a use
            add(m, target(head, p.group(2), p.start()), p.start(), t)
        for c in children:
            for q in re.finditer(r"(?<![A-Za-z0-9_:$])" + re.escape(c) + r"\s*::", t):
                add(m, m + "::" + c, q.start(), t)
    return modules, edges


def collapse(name, depth):
    parts = name.split("::")
    return "::".join(parts[: depth + 1])


def sccs(nodes, adj):
    """Tarjan's strongly connected components, each sorted, in a stable order."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(adj.get(v, ())):
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
            out.append(sorted(comp))

    sys.setrecursionlimit(max(1000, 4 * len(nodes) + 100))
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return sorted(out, key=lambda c: (-len(c), c))


def under(name, module):
    """Whether `name` is `module` or a module under it (`module` without `crate::`)."""
    full = ROOT + "::" + module
    return name == full or name.startswith(full + "::")


def analyse(src, depth, tests=True, within=None):
    modules, raw = build_graph(src, tests)
    keep = (lambda n: under(n, within)) if within else (lambda n: True)
    nodes = sorted({collapse(m, depth) for m in modules if keep(collapse(m, depth))})
    edges = {}
    for (a, b), where in sorted(raw.items()):
        ca, cb = collapse(a, depth), collapse(b, depth)
        if ca != cb and keep(ca) and keep(cb):
            edges.setdefault((ca, cb), where)
    adj = {}
    for a, b in edges:
        adj.setdefault(a, set()).add(b)
    comps = [c for c in sccs(nodes, adj) if len(c) > 1]
    return nodes, edges, comps


def parse_rule(text):
    """`A,B=C,D` -> (["A", "B"], ["C", "D"]), or None when malformed."""
    frm, eq, to = text.partition("=")
    split = lambda x: [m.strip() for m in x.split(",") if m.strip()]
    return (split(frm), split(to)) if eq and split(frm) and split(to) else None


def broken_rules(edges, rules):
    """The edges that break a rule: [(rule text, from, to, where)]."""
    out = []
    for text, (frm, to) in rules:
        for (a, b), where in sorted(edges.items()):
            if any(under(a, f) for f in frm) and any(under(b, t) for t in to):
                out.append((text, a, b, where))
    return out


def short(name):
    return name[len(ROOT) + 2:] if name.startswith(ROOT + "::") else name


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src", nargs="?", default="src")
    ap.add_argument("--depth", type=int, default=1, help="collapse module paths to N segments (default 1)")
    ap.add_argument("--fail-on-cycles", action="store_true", help="exit 1 when the graph has a cycle")
    ap.add_argument("--edges", action="store_true", help="also print each edge with the first line making it")
    ap.add_argument("--no-tests", action="store_true", help="ignore inline #[cfg(test)] modules")
    ap.add_argument("--within", metavar="M", help="only module M and the modules under it")
    ap.add_argument("--forbid", metavar="A,B=C,D", action="append", default=[],
                    help="no edge from A or B to C or D (a layering rule; repeatable)")
    a = ap.parse_args(argv)
    rules = [(r, parse_rule(r)) for r in a.forbid]
    if a.depth < 1 or not os.path.isdir(a.src) or any(p is None for _, p in rules):
        print(f"module_graph: bad arguments (src {a.src!r}, depth {a.depth}, forbid {a.forbid})",
              file=sys.stderr)
        return 2
    nodes, edges, comps = analyse(a.src, a.depth, tests=not a.no_tests, within=a.within)
    scope = f", within {a.within}" if a.within else ""
    print(f"module graph of {a.src} (depth {a.depth}{scope}): {len(nodes)} modules, {len(edges)} edges")
    for n in nodes:
        outs = sorted(short(b) for (x, b) in edges if x == n)
        print(f"  {short(n)} -> {', '.join(outs) if outs else '(nothing)'}")
    if a.edges:
        print("edges (first occurrence):")
        for (x, b), where in sorted(edges.items()):
            print(f"  {short(x)} -> {short(b)}  {where}")
    if comps:
        in_cycles = sum(len(c) for c in comps)
        print(f"cycles: {len(comps)} strongly connected component(s), {in_cycles} of {len(nodes)} modules")
        for c in comps:
            print(f"  {{{', '.join(short(x) for x in c)}}}")
    else:
        print("cycles: none (the graph is a DAG)")
    broken = broken_rules(edges, rules)
    for text, x, b, where in broken:
        print(f"forbidden edge ({text}): {short(x)} -> {short(b)}  {where}")
    if rules and not broken:
        print(f"layering rules: {len(rules)} hold")
    return 1 if (comps or broken) and a.fail_on_cycles else 0


if __name__ == "__main__":
    sys.exit(main())
