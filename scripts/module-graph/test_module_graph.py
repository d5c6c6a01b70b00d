"""Tests of module_graph.py on small fixture crates written to a temporary directory.

Run: python3 -m unittest discover -s scripts/module-graph -p 'test_*.py'
"""

import contextlib
import io
import os
import sys
import tempfile
import textwrap
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import module_graph  # noqa: E402

# a <-> b form a cycle; everything else is acyclic. Each file also holds references that
# must NOT become edges (comments, strings, visibilities, inline-module `super`).
FIXTURE = {
    "lib.rs": """
        pub mod a;
        pub mod b;
        mod c;
        pub mod d;
        mod e;
    """,
    "a.rs": """
        use crate::b::Thing; // crate::c::f in a comment is no edge
        /* nor crate::d::g in /* a nested */ block comment */
        pub(crate) fn g() -> &'static str { "crate::e::h in a string" }
        pub(super) struct S;
    """,
    "b.rs": """
        pub struct Thing;
        pub fn f() { crate::a::g(); let _c = 'x'; let _r = r#"crate::c::x"#; }
    """,
    "c.rs": """
        pub fn x() { crate::shout!(); }
        #[cfg(test)]
        mod tests {
            use super::*;
            fn t() { super::x(); }
        }
    """,
    "d/mod.rs": """
        pub mod inner;
        #[macro_export]
        macro_rules! shout { () => { $crate::d::inner::loud() }; }
        pub fn uses_child() { inner::loud(); }
    """,
    "d/inner.rs": """
        pub fn loud() {}
        fn up() { super::super::b::f(); }
    """,
    "e.rs": """
        use crate::{a::g, c as see, d::{inner::loud, uses_child}};
    """,
}


def write(root, files):
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(textwrap.dedent(text))


def run(argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = module_graph.main(argv)
    return rc, out.getvalue()


class ModuleGraphTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.src = os.path.join(self.tmp.name, "src")
        write(self.src, FIXTURE)

    def tearDown(self):
        self.tmp.cleanup()

    def edges(self, depth=1):
        _, edges, comps = module_graph.analyse(self.src, depth)
        return {(module_graph.short(a), module_graph.short(b)) for a, b in edges}, comps

    def test_edges_are_the_paths_code_names(self):
        edges, _ = self.edges()
        self.assertEqual(
            edges,
            {
                ("a", "b"),  # use crate::b::Thing
                ("b", "a"),  # crate::a::g() in code
                ("c", "d"),  # crate::shout!() is defined in d
                ("d", "b"),  # super::super::b from d::inner
                ("e", "a"),  # grouped use
                ("e", "c"),
                ("e", "d"),
            },
        )

    def test_cycle_is_reported_and_fails_only_with_the_flag(self):
        _, comps = self.edges()
        self.assertEqual(comps, [["crate::a", "crate::b"]])
        rc, out = run([self.src])
        self.assertEqual(rc, 0)
        self.assertIn("cycles: 1 strongly connected component(s), 2 of 6 modules", out)
        self.assertIn("{a, b}", out)
        rc, _ = run(["--fail-on-cycles", self.src])
        self.assertEqual(rc, 1)

    def test_acyclic_graph_passes_the_flag(self):
        write(self.src, {"b.rs": "pub struct Thing;\n"})
        rc, out = run(["--fail-on-cycles", self.src])
        self.assertEqual(rc, 0, out)
        self.assertIn("cycles: none", out)

    def test_depth_two_keeps_submodules(self):
        edges, comps = self.edges(depth=2)
        self.assertIn(("d::inner", "b"), edges)
        self.assertIn(("d", "d::inner"), edges)  # a child module named by its bare name
        self.assertIn(("c", "d"), edges)  # the macro is defined in d/mod.rs: d, not inner
        self.assertNotIn(("c", "d::inner"), edges)
        self.assertIn(("e", "d::inner"), edges)  # nested use group
        self.assertIn(("e", "d"), edges)
        self.assertEqual(comps, [["crate::a", "crate::b"]])

    def test_test_modules_can_be_left_out(self):
        write(self.src, {"e.rs": """
            pub fn f() {}
            #[cfg(test)]
            mod tests {
                use crate::a::g;
                #[test] fn t() { crate::b::f(); }
            }
        """})
        _, edges, _ = module_graph.analyse(self.src, 1)
        names = {(module_graph.short(a), module_graph.short(b)) for a, b in edges}
        self.assertTrue({("e", "a"), ("e", "b")} <= names)
        _, edges, _ = module_graph.analyse(self.src, 1, tests=False)
        names = {(module_graph.short(a), module_graph.short(b)) for a, b in edges}
        self.assertFalse({("e", "a"), ("e", "b")} & names)

    def test_within_keeps_one_module_and_its_children(self):
        nodes, edges, comps = module_graph.analyse(self.src, 2, within="d")
        self.assertEqual(nodes, ["crate::d", "crate::d::inner"])
        # d::inner -> b leaves the scope: dropped; d -> d::inner stays
        self.assertEqual(set(edges), {("crate::d", "crate::d::inner")})
        self.assertEqual(comps, [])
        rc, out = run(["--depth", "2", "--within", "d", "--fail-on-cycles", self.src])
        self.assertEqual(rc, 0, out)
        self.assertIn("(depth 2, within d): 2 modules, 1 edges", out)

    def test_forbid_rules_name_the_edges_that_break_them(self):
        write(self.src, {"b.rs": "pub struct Thing;\n"})  # no cycle left
        rc, out = run(["--forbid", "c,e=d", "--fail-on-cycles", self.src])
        self.assertEqual(rc, 1)
        self.assertIn("forbidden edge (c,e=d): c -> d", out)
        self.assertIn("forbidden edge (c,e=d): e -> d", out)
        # a rule on a module under d (depth 2 edges d::inner -> b) matches by prefix
        rc, out = run(["--depth", "2", "--forbid", "d=b", "--fail-on-cycles", self.src])
        self.assertEqual(rc, 1)
        self.assertIn("d::inner -> b", out)
        rc, out = run(["--forbid", "a=c,d", "--fail-on-cycles", self.src])
        self.assertEqual(rc, 0, out)
        self.assertIn("layering rules: 1 hold", out)
        # without --fail-on-cycles a broken rule is reported only
        rc, _ = run(["--forbid", "e=d", self.src])
        self.assertEqual(rc, 0)
        rc, _ = run(["--forbid", "nothing", self.src])
        self.assertEqual(rc, 2)

    def test_root_reexports_of_other_crates_are_leaf_nodes(self):
        write(self.src, {
            "lib.rs": FIXTURE["lib.rs"] + "pub use other::{cfg, led as ledger};\npub use other::x::clk;\nstatic T: u8 = a::N;\n",
            "b.rs": "pub struct Thing; fn f() -> crate::cfg::C { crate::ledger::L; crate::clk::now() }\n",
        })
        edges, comps = self.edges()
        self.assertTrue({("b", "cfg"), ("b", "ledger"), ("b", "clk")} <= edges, edges)
        self.assertNotIn(("b", "crate"), edges)
        self.assertIn(("crate", "a"), edges)  # the root's own code names a module
        self.assertEqual(comps, [])

    def test_bad_input(self):
        rc, _ = run([os.path.join(self.tmp.name, "missing")])
        self.assertEqual(rc, 2)


if __name__ == "__main__":
    unittest.main()
