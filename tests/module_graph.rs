//! The module tree holds the direction of its dependencies.
//!
//! For both crates, every `use` and every `crate::`/`super::`/`self::` path in the source
//! (test modules left out) is resolved to the module file it names, through `pub use`
//! re-exports. Two modules that sit side by side under one parent must not reach each other in
//! a circle, at any level of the tree; a module and its own submodules are one thing, not two.
//! In the main crate the top level is layered: `domain` depends on nothing else, `infra` only on
//! `domain`, `app` on both.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type ModPath = Vec<String>;

/// A `use` statement: whether it is `pub`, and its flat paths with their aliases.
type UseStatement = (bool, Vec<(ModPath, Option<String>)>);

#[derive(Default)]
struct Module {
    file: PathBuf,
    /// Source with comments, strings and `#[cfg(test)]` modules removed.
    text: String,
    children: BTreeSet<String>,
    /// `pub use` names: the name as seen from outside → the absolute path it stands for.
    reexports: BTreeMap<String, ModPath>,
}

struct Crate {
    modules: BTreeMap<ModPath, Module>,
}

/// An edge between two modules, with the file that makes it (for the failure message).
type Edges = BTreeMap<ModPath, BTreeMap<ModPath, PathBuf>>;

fn module_path(src: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut segs: ModPath = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if segs.last().map(String::as_str) == Some("mod") {
        segs.pop();
    }
    if segs == ["lib"] {
        segs.clear();
    }
    segs
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Removes comments, string and char literals, and `#[cfg(test)] mod … { … }` blocks.
fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == b'r'
            && matches!(b.get(i + 1), Some(b'"') | Some(b'#'))
            && !ident_before(b, i)
        {
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push(c as char);
                i += 1;
                continue;
            }
            j += 1;
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            while j < b.len() && !b[j..].starts_with(&close) {
                j += 1;
            }
            i = j + close.len();
            out.push_str("\"\"");
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\u{..}'), or a lifetime, which is kept.
            let lit_len = if b.get(i + 1) == Some(&b'\\') {
                b[i + 2..].iter().position(|&x| x == b'\'').map(|p| p + 3)
            } else if b.get(i + 2) == Some(&b'\'') {
                Some(3)
            } else {
                let ch = src[i + 1..].chars().next().map_or(1, char::len_utf8);
                (b.get(i + 1 + ch) == Some(&b'\'')).then_some(ch + 2)
            };
            match lit_len {
                Some(n) => {
                    out.push_str("' '");
                    i += n;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            let ch = src[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    remove_test_modules(&out)
}

fn ident_before(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
}

fn remove_test_modules(text: &str) -> String {
    let mut out = text.to_string();
    while let Some(at) = out.find("#[cfg(test)]") {
        let rest = &out[at..];
        let Some(open) = rest.find('{') else { break };
        // Only a module (or an item) directly after the attribute: cut to its closing brace,
        // or to its `;` when it is `mod x;`.
        let semi = rest.find(';').unwrap_or(usize::MAX);
        let end = if semi < open {
            at + semi + 1
        } else {
            let mut depth = 0;
            let mut end = out.len();
            for (k, ch) in rest.char_indices().skip(open) {
                match ch {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = at + k + 1;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            end
        };
        out.replace_range(at..end, "");
    }
    out
}

/// The `use` trees in a text: (is `pub`, flat paths with an optional alias).
fn use_statements(text: &str) -> Vec<UseStatement> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = find_word(rest, "use") {
        let before = rest[..at].trim_end();
        let is_pub = before.ends_with("pub") || before.ends_with(')') && before.contains("pub(");
        let after = &rest[at + 3..];
        let Some(end) = after.find(';') else { break };
        let tree = normalize(&after[..end]);
        rest = &after[end..];
        if tree.is_empty() || tree.starts_with('(') {
            continue;
        }
        let mut flat = Vec::new();
        expand(&tree, &mut Vec::new(), &mut flat);
        found.push((is_pub, flat));
    }
    found
}

/// One space between words, none around `::`, braces and commas.
fn normalize(tree: &str) -> String {
    let words: Vec<&str> = tree.split_whitespace().collect();
    let mut out = words.join(" ");
    for p in ["::", "{", "}", ","] {
        out = out
            .replace(&format!(" {p}"), p)
            .replace(&format!("{p} "), p);
    }
    out
}

fn find_word(text: &str, word: &str) -> Option<usize> {
    let b = text.as_bytes();
    let mut from = 0;
    while let Some(p) = text[from..].find(word) {
        let at = from + p;
        let before_ok = at == 0 || !(b[at - 1].is_ascii_alphanumeric() || b[at - 1] == b'_');
        let after_ok = b
            .get(at + word.len())
            .is_some_and(|c| c.is_ascii_whitespace());
        if before_ok && after_ok {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

fn expand(tree: &str, prefix: &mut ModPath, out: &mut Vec<(ModPath, Option<String>)>) {
    let tree = tree.trim().trim_start_matches("::");
    if let Some(open) = tree.find('{') {
        let head = &tree[..open];
        let body = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let n = prefix.len();
        prefix.extend(head.split("::").filter(|s| !s.is_empty()).map(String::from));
        let mut depth = 0;
        let mut start = 0;
        for (k, ch) in body.char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&body[start..k], prefix, out);
                    start = k + 1;
                }
                _ => {}
            }
        }
        if start < body.len() {
            expand(&body[start..], prefix, out);
        }
        prefix.truncate(n);
    } else {
        let (path, alias) = match tree.split_once(" as ") {
            Some((p, a)) => (p, Some(a.to_string())),
            None => (tree, None),
        };
        let mut full = prefix.clone();
        full.extend(path.split("::").filter(|s| !s.is_empty()).map(String::from));
        if full.last().is_some_and(|s| s == "self") {
            full.pop();
        }
        if !full.is_empty() {
            out.push((full, alias));
        }
    }
}

/// Paths written inline: `crate::a::b`, `super::x`, `self::x`, and `child::x` for a module's
/// own submodules.
fn inline_paths(text: &str, children: &BTreeSet<String>) -> Vec<ModPath> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let starts_ident = (b[i].is_ascii_alphabetic() || b[i] == b'_')
            && (i == 0
                || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b':'));
        if !starts_ident {
            i += 1;
            continue;
        }
        let mut j = i;
        let mut segs = Vec::new();
        loop {
            let s = j;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                j += 1;
            }
            segs.push(text[s..j].to_string());
            if text[j..].starts_with("::")
                && b.get(j + 2)
                    .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
            {
                j += 2;
            } else {
                break;
            }
        }
        let first = segs[0].as_str();
        if segs.len() > 1
            && (matches!(first, "crate" | "super" | "self") || children.contains(first))
        {
            out.push(segs);
        }
        i = j.max(i + 1);
    }
    out
}

impl Crate {
    fn load(src: &Path) -> Crate {
        let mut files = Vec::new();
        rust_files(src, &mut files);
        let mut modules = BTreeMap::new();
        for file in files {
            if file.file_name().is_some_and(|n| n == "main.rs") && file.parent() == Some(src) {
                continue; // the binary is its own crate
            }
            let raw = std::fs::read_to_string(&file).unwrap();
            let text = strip(&raw);
            let mut children = BTreeSet::new();
            let mut rest = text.as_str();
            while let Some(at) = find_word(rest, "mod") {
                let after = rest[at + 3..].trim_start();
                let name: String = after
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if after[name.len()..].trim_start().starts_with(';') && !name.is_empty() {
                    children.insert(name);
                }
                rest = &rest[at + 3..];
            }
            let path = module_path(src, &file);
            modules.insert(
                path,
                Module {
                    file,
                    text,
                    children,
                    reexports: BTreeMap::new(),
                },
            );
        }
        let mut krate = Crate { modules };
        // Re-exports, made absolute (one pass is enough: resolution follows them repeatedly).
        let paths: Vec<ModPath> = krate.modules.keys().cloned().collect();
        for m in &paths {
            let uses = use_statements(&krate.modules[m].text);
            let children = krate.modules[m].children.clone();
            let mut reexports = BTreeMap::new();
            for (is_pub, flat) in uses {
                if !is_pub {
                    continue;
                }
                for (p, alias) in flat {
                    if let Some(abs) = absolute(m, &p, &children) {
                        let name = alias.unwrap_or_else(|| abs.last().cloned().unwrap_or_default());
                        if name != "*" {
                            reexports.insert(name, abs);
                        }
                    }
                }
            }
            krate.modules.get_mut(m).unwrap().reexports = reexports;
        }
        krate
    }

    /// The module file an absolute path lands in, following re-exports.
    fn resolve(&self, path: &ModPath) -> Option<ModPath> {
        let mut path = path.clone();
        for _ in 0..16 {
            let k = (0..=path.len())
                .rev()
                .find(|&k| self.modules.contains_key(&path[..k]))?;
            let module = &self.modules[&path[..k]];
            match path.get(k).and_then(|next| module.reexports.get(next)) {
                Some(target) if k < path.len() => {
                    let mut next = target.clone();
                    next.extend_from_slice(&path[k + 1..]);
                    if next == path {
                        return Some(path[..k].to_vec());
                    }
                    path = next;
                }
                _ => return Some(path[..k].to_vec()),
            }
        }
        None
    }

    fn edges(&self) -> Edges {
        let mut edges = Edges::new();
        for (m, module) in &self.modules {
            let mut targets = Vec::new();
            for (is_pub, flat) in use_statements(&module.text) {
                if is_pub {
                    continue; // an alias, followed where it is used
                }
                for (p, _) in flat {
                    targets.extend(absolute(m, &p, &module.children));
                }
            }
            for p in inline_paths(&module.text, &module.children) {
                targets.extend(absolute(m, &p, &module.children));
            }
            for t in targets {
                if let Some(to) = self.resolve(&t) {
                    if &to != m {
                        edges
                            .entry(m.clone())
                            .or_default()
                            .insert(to, module.file.clone());
                    }
                }
            }
        }
        edges
    }
}

/// Makes a path written in module `m` absolute; `None` for paths into other crates.
fn absolute(m: &ModPath, p: &ModPath, children: &BTreeSet<String>) -> Option<ModPath> {
    let mut base: ModPath;
    let mut rest = &p[..];
    match p.first().map(String::as_str) {
        Some("crate") => {
            base = Vec::new();
            rest = &p[1..];
        }
        Some("super") | Some("self") => {
            base = m.clone();
            while let Some(first) = rest.first() {
                match first.as_str() {
                    "super" => {
                        base.pop();
                    }
                    "self" => {}
                    _ => break,
                }
                rest = &rest[1..];
            }
        }
        Some(first) if children.contains(first) => base = m.clone(),
        _ => return None,
    }
    base.extend_from_slice(rest);
    Some(base)
}

/// Lifts each module-to-module edge to the two siblings under their deepest common parent.
fn sibling_graphs(edges: &Edges) -> BTreeMap<ModPath, Edges> {
    let mut graphs: BTreeMap<ModPath, Edges> = BTreeMap::new();
    for (from, tos) in edges {
        for (to, file) in tos {
            let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
            if common == from.len() || common == to.len() {
                continue; // a module and its own submodule
            }
            let parent = from[..common].to_vec();
            let a = from[..=common].to_vec();
            let b = to[..=common].to_vec();
            graphs
                .entry(parent)
                .or_default()
                .entry(a)
                .or_default()
                .entry(b)
                .or_insert_with(|| file.clone());
        }
    }
    graphs
}

/// Every circle in a graph, each as the strongly connected set of its nodes.
fn circles(graph: &Edges) -> Vec<Vec<ModPath>> {
    struct Tarjan<'a> {
        graph: &'a Edges,
        index: BTreeMap<ModPath, usize>,
        low: BTreeMap<ModPath, usize>,
        stack: Vec<ModPath>,
        out: Vec<Vec<ModPath>>,
    }
    impl Tarjan<'_> {
        fn visit(&mut self, v: &ModPath) {
            let n = self.index.len();
            self.index.insert(v.clone(), n);
            self.low.insert(v.clone(), n);
            self.stack.push(v.clone());
            for w in self.graph.get(v).into_iter().flat_map(|t| t.keys()) {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = Vec::new();
                while let Some(w) = self.stack.pop() {
                    let done = &w == v;
                    comp.push(w);
                    if done {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort();
                    self.out.push(comp);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        out: Vec::new(),
    };
    let nodes: BTreeSet<&ModPath> = graph
        .keys()
        .chain(graph.values().flat_map(|t| t.keys()))
        .collect();
    for v in nodes {
        if !t.index.contains_key(v) {
            t.visit(v);
        }
    }
    t.out
}

fn name(m: &ModPath) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

/// Every circle between sibling modules, described with the files that close it.
fn circle_report(krate: &Crate) -> Vec<String> {
    let mut report = Vec::new();
    for graph in sibling_graphs(&krate.edges()).values() {
        for comp in circles(graph) {
            let set: BTreeSet<&ModPath> = comp.iter().collect();
            let mut lines = vec![format!(
                "circle: {}",
                comp.iter().map(name).collect::<Vec<_>>().join(" ↔ ")
            )];
            for a in &comp {
                for (b, file) in graph.get(a).into_iter().flatten() {
                    if set.contains(b) {
                        lines.push(format!(
                            "  {} → {} (in {})",
                            name(a),
                            name(b),
                            file.display()
                        ));
                    }
                }
            }
            report.push(lines.join("\n"));
        }
    }
    report
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn no_circle_between_modules_of_the_supervisor_crate() {
    let report = circle_report(&Crate::load(&root().join("src")));
    assert!(report.is_empty(), "{}", report.join("\n"));
}

#[test]
fn no_circle_between_modules_of_the_agent_crate() {
    let report = circle_report(&Crate::load(&root().join("agent-image/src")));
    assert!(report.is_empty(), "{}", report.join("\n"));
}

#[test]
fn the_top_level_is_layered_domain_infra_app() {
    let krate = Crate::load(&root().join("src"));
    let rank = |m: &ModPath| match m.first().map(String::as_str) {
        Some("domain") => Some(0),
        Some("infra") => Some(1),
        Some("app") => Some(2),
        _ => None,
    };
    let top: BTreeSet<String> = krate
        .modules
        .keys()
        .filter_map(|m| m.first().cloned())
        .collect();
    assert_eq!(
        top,
        ["app", "domain", "infra"].map(String::from).into(),
        "the crate's top level is exactly domain, infra and app"
    );
    let mut wrong = Vec::new();
    for (from, tos) in krate.edges() {
        for (to, file) in tos {
            if let (Some(a), Some(b)) = (rank(&from), rank(&to)) {
                if b > a {
                    wrong.push(format!(
                        "{} → {} (in {})",
                        name(&from),
                        name(&to),
                        file.display()
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "dependencies against the layers:\n{}",
        wrong.join("\n")
    );
}

/// The checker itself: a circle two levels down, made through a re-export, is found; a module
/// using its own parent is not a circle.
#[test]
fn the_checker_finds_a_circle_through_a_reexport() {
    let dir = tempfile::tempdir().unwrap();
    let write = |rel: &str, text: &str| {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write("lib.rs", "pub mod a;\npub mod b;\n");
    write(
        "a/mod.rs",
        "mod x;\nmod y;\npub use x::Thing;\npub fn f() { y::g() }\n",
    );
    write("a/x.rs", "use super::f;\n/* crate::b::nope */\npub struct Thing;\nfn h() { let _ = \"crate::b::no\"; }\n");
    write(
        "a/y.rs",
        "pub fn g() {}\n#[cfg(test)]\nmod tests { use crate::b::B; }\n",
    );
    write("b.rs", "pub struct B;\n");
    let clean = circle_report(&Crate::load(dir.path()));
    assert!(clean.is_empty(), "{clean:?}");

    write("b.rs", "pub struct B(crate::a::Thing);\n");
    write("a/y.rs", "use crate::b::B;\npub fn g() {}\n");
    let report = circle_report(&Crate::load(dir.path())).join("\n");
    assert!(report.contains("circle: a ↔ b"), "{report}");
}

/// Prints the graph between sibling modules at every level of the main crate:
/// `cargo test --test module_graph -- --ignored --nocapture`.
#[test]
#[ignore = "prints the graph; run by hand"]
fn print_the_module_graph() {
    for (parent, graph) in sibling_graphs(&Crate::load(&root().join("src")).edges()) {
        println!("[{}]", name(&parent));
        for (from, tos) in graph {
            let last = |m: &ModPath| m.last().cloned().unwrap_or_default();
            let tos: Vec<String> = tos.keys().map(last).collect();
            println!("  {} → {}", last(&from), tos.join(", "));
        }
    }
}
