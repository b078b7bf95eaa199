//! The shape of regsweep's code, checked on every run of the suite (issue 24): the import
//! graph of its top-level modules (from `crate::` paths) has no circle and no stage reaches
//! back up the pipeline; no function in `src/` is longer than 100 lines; every file opens
//! with a `//!` line saying what it is for.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::spanned::Spanned;
use syn::visit::Visit;

/// The longest a function may be, signature to closing brace.
const MAX_FN_LINES: usize = 100;

/// Imports that would make a stage depend on a later one (or on the configuration):
/// (importer, imported, why).
const FORBIDDEN: &[(&str, &str, &str)] = &[
    (
        "plan",
        "storage",
        "the planner is pure: it sees records, not storage",
    ),
    (
        "plan",
        "delete",
        "the planner decides; deleting comes after it",
    ),
    ("plan", "config", "the planner gets policies, not flags"),
    ("plan", "report", "reporting comes after planning"),
    ("plan", "app", "the planner is pure"),
    ("plan", "gc", "the planner is pure"),
    (
        "report",
        "delete",
        "report shows outcomes; it must not reach into the deleter",
    ),
    ("report", "gc", "report shows what gc tells it"),
    ("report", "app", "report is below the run"),
    ("gc", "app", "gc is a stage the run calls"),
    ("storage", "plan", "reading storage comes before planning"),
    (
        "storage",
        "delete",
        "the deleter uses storage, not the other way round",
    ),
    ("meta", "plan", "reading manifests comes before planning"),
    ("config", "app", "the configuration is below the run"),
];

/// The workspace root (regsweep's package).
fn root() -> PathBuf {
    let testkit = Path::new(env!("CARGO_MANIFEST_DIR"));
    testkit
        .parent()
        .expect("testkit sits in the workspace")
        .to_owned()
}

fn src_dir() -> PathBuf {
    root().join("src")
}

/// Every `.rs` file under `src/`.
fn sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read src")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&src_dir(), &mut out);
    out
}

/// The file's module path below the crate: `src/gc/mod.rs` is `["gc"]`, `src/gc/mark.rs`
/// `["gc", "mark"]`, `src/lib.rs` and `src/main.rs` are `[]`.
fn module_of(path: &Path) -> Vec<String> {
    let rel = path.strip_prefix(src_dir()).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|l| l == "mod" || l == "lib" || l == "main")
    {
        parts.pop();
    }
    parts
}

/// Test code is not part of the import graph (a unit test may build its input any way).
fn is_test_code(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Meta>()
                .is_ok_and(|m| m.path().is_ident("test"))
    })
}

/// Collects `crate::top` references (outside test code) and function lengths.
struct Reader<'a> {
    module: &'a [String],
    file: String,
    imports: BTreeSet<String>,
    long: Vec<String>,
}

impl Reader<'_> {
    fn reference(&mut self, first: &str, second: Option<String>) {
        match first {
            "crate" => {
                if let Some(top) = second {
                    self.imports.insert(top);
                }
            }
            // `super::x` from a top-level module (`src/a.rs`, `src/a/mod.rs`'s children
            // are deeper) names the crate root's `x`.
            "super" if self.module.len() == 1 => {
                if let Some(top) = second {
                    self.imports.insert(top);
                }
            }
            _ => {}
        }
    }

    fn use_tree(&mut self, tree: &syn::UseTree, prefix: Option<&str>) {
        match (tree, prefix) {
            (syn::UseTree::Path(p), None) => {
                let first = p.ident.to_string();
                if first == "crate" || first == "super" {
                    self.use_tree(&p.tree, Some(&first));
                }
            }
            (syn::UseTree::Path(p), Some(first)) => {
                self.reference(first, Some(p.ident.to_string()))
            }
            (syn::UseTree::Name(n), Some(first)) => {
                self.reference(first, Some(n.ident.to_string()))
            }
            (syn::UseTree::Rename(r), Some(first)) => {
                self.reference(first, Some(r.ident.to_string()))
            }
            (syn::UseTree::Group(g), prefix) => {
                for t in &g.items {
                    self.use_tree(t, prefix);
                }
            }
            _ => {}
        }
    }

    /// `crate::x` (and `super::x`) in a token stream, groups included.
    fn tokens(&mut self, tokens: proc_macro2::TokenStream) {
        use proc_macro2::TokenTree;
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        for (i, t) in trees.iter().enumerate() {
            match t {
                TokenTree::Group(g) => self.tokens(g.stream()),
                TokenTree::Ident(first) => {
                    let next: Vec<&TokenTree> = trees[i + 1..].iter().take(3).collect();
                    if let [
                        TokenTree::Punct(a),
                        TokenTree::Punct(b),
                        TokenTree::Ident(second),
                    ] = next.as_slice()
                        && a.as_char() == ':'
                        && b.as_char() == ':'
                    {
                        self.reference(&first.to_string(), Some(second.to_string()));
                    }
                }
                _ => {}
            }
        }
    }

    fn length(&mut self, name: &syn::Ident, sig: &syn::Signature, block: &syn::Block) {
        let start = sig.fn_token.span.start().line;
        let end = block.span().end().line;
        let lines = end + 1 - start;
        if lines > MAX_FN_LINES {
            self.long
                .push(format!("{}:{start}: fn {name} is {lines} lines", self.file));
        }
    }
}

impl<'ast> Visit<'ast> for Reader<'_> {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if !is_test_code(&m.attrs) {
            syn::visit::visit_item_mod(self, m);
        }
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        self.length(&f.sig.ident, &f.sig, &f.block);
        if !is_test_code(&f.attrs) {
            syn::visit::visit_item_fn(self, f);
        }
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        self.length(&f.sig.ident, &f.sig, &f.block);
        syn::visit::visit_impl_item_fn(self, f);
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        if !is_test_code(&u.attrs) {
            self.use_tree(&u.tree, None);
        }
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        // Macro arguments (`format!("{}", crate::x::f())`) are tokens, not paths, to syn.
        self.tokens(m.tokens.clone());
        syn::visit::visit_macro(self, m);
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let mut segs = p.segments.iter().map(|s| s.ident.to_string());
        if let Some(first) = segs.next() {
            let second = segs.next();
            self.reference(&first, second);
        }
        syn::visit::visit_path(self, p);
    }
}

/// What the sources say: imports between top-level modules, and too-long functions.
struct Shape {
    edges: BTreeMap<String, BTreeSet<String>>,
    long: Vec<String>,
    undocumented: Vec<String>,
}

fn read_shape() -> Shape {
    let tops: BTreeSet<String> = sources()
        .iter()
        .filter_map(|p| module_of(p).first().cloned())
        .collect();
    let mut shape = Shape {
        edges: BTreeMap::new(),
        long: Vec::new(),
        undocumented: Vec::new(),
    };
    for path in sources() {
        let text = std::fs::read_to_string(&path).expect("read source");
        let shown = path
            .strip_prefix(root())
            .unwrap_or(&path)
            .display()
            .to_string();
        if !text.trim_start().starts_with("//!") {
            shape.undocumented.push(shown.clone());
        }
        let file = syn::parse_file(&text).unwrap_or_else(|e| panic!("{shown}: {e}"));
        let module = module_of(&path);
        // A file that is all test code (`#[cfg(test)] mod tests;`) is named tests.rs.
        let test_file = path.file_name().is_some_and(|n| n == "tests.rs");
        let mut reader = Reader {
            module: &module,
            file: shown,
            imports: BTreeSet::new(),
            long: Vec::new(),
        };
        reader.visit_file(&file);
        shape.long.append(&mut reader.long);
        let Some(top) = module.first() else { continue };
        if test_file {
            continue;
        }
        let out = shape.edges.entry(top.clone()).or_default();
        out.extend(
            reader
                .imports
                .into_iter()
                .filter(|m| m != top && tops.contains(m)),
        );
    }
    shape
}

/// The import circles: every strongly connected set of more than one module.
fn circles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_owned()];
        while let Some(m) = todo.pop() {
            for n in edges.get(&m).into_iter().flatten() {
                if seen.insert(n.clone()) {
                    todo.push(n.clone());
                }
            }
        }
        seen
    };
    let mut found: BTreeSet<Vec<String>> = BTreeSet::new();
    for m in edges.keys() {
        let from_m = reach(m);
        if !from_m.contains(m) {
            continue;
        }
        let circle: Vec<String> = from_m
            .iter()
            .filter(|n| reach(n).contains(m))
            .cloned()
            .collect();
        found.insert(circle);
    }
    found.into_iter().collect()
}

#[test]
fn no_import_circle_between_modules() {
    let shape = read_shape();
    let circles = circles(&shape.edges);
    let show: Vec<String> = circles.iter().map(|c| c.join(" <-> ")).collect();
    assert!(
        circles.is_empty(),
        "import circles: {show:#?}\nedges: {:#?}",
        shape.edges
    );
}

#[test]
fn no_stage_reaches_back_up_the_pipeline() {
    let shape = read_shape();
    let bad: Vec<String> = FORBIDDEN
        .iter()
        .filter(|(from, to, _)| shape.edges.get(*from).is_some_and(|e| e.contains(*to)))
        .map(|(from, to, why)| format!("{from} imports {to}: {why}"))
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn no_function_is_over_100_lines() {
    let shape = read_shape();
    assert!(shape.long.is_empty(), "{:#?}", shape.long);
}

#[test]
fn every_source_file_says_what_it_is_for() {
    let shape = read_shape();
    assert!(shape.undocumented.is_empty(), "{:#?}", shape.undocumented);
}

#[test]
fn the_checker_sees_a_circle_and_a_long_function() {
    // The checks above pass only if they can fail: a circle of two, a 101-line function.
    let mut edges = BTreeMap::new();
    edges.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    edges.insert("b".to_owned(), BTreeSet::from(["a".to_owned()]));
    edges.insert("c".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(circles(&edges), vec![vec!["a".to_owned(), "b".to_owned()]]);
    let body = "    let _x = 1;\n".repeat(99);
    let text = format!("fn long() {{\n{body}}}\n");
    let file = syn::parse_file(&text).expect("parse");
    let module = vec!["x".to_owned()];
    let mut reader = Reader {
        module: &module,
        file: "x.rs".into(),
        imports: BTreeSet::new(),
        long: Vec::new(),
    };
    reader.visit_file(&file);
    assert_eq!(reader.long, vec!["x.rs:1: fn long is 101 lines".to_owned()]);
}
