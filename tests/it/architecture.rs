//! The architecture guard: reads `src/` and fails on
//!
//! - an import circle between the modules of one folder: between top-level
//!   modules (the crate root is a folder too), or between the files and
//!   subfolders of any folder (a folder's `mod.rs` is its face, not a member);
//! - a top-level module that imports one in a layer above its own
//!   ([`LAYERS`], lowest first; docs/development.md shows the same order);
//! - a source file over [`MAX_LINES`] lines.
//!
//! Imports are read from the code (comments and string literals left out):
//! every `crate::…`, `super::…` and `self::…` path, `use` groups included.
//! Each problem names the files that make it, so the fix starts there.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The top-level modules by layer, lowest first. A module may import its
/// own layer and those below; a new module must be placed here.
const LAYERS: &[&[&str]] = &[
    &["time", "whole", "net", "auth", "charge", "html"],
    &["record"],
    &["store"],
    &["ingest", "pricing", "ledger"],
    &["documents", "plans", "synth"],
    &["billing"],
    &["finance"],
    &["estimate", "dashboard"],
    &["proxy", "http"],
    &["cli"],
];

/// The most lines a source file may have: more than one person holds in mind.
const MAX_LINES: usize = 700;

/// A source file: its module path and its code.
#[derive(Clone)]
struct Source {
    path: String,
    module: Vec<String>,
    code: String,
    lines: usize,
}

/// A module path, as the files name it.
fn module_of(path: &str) -> Vec<String> {
    let mut parts: Vec<String> = path
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_owned)
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The code with comments, string and character literals blanked out
/// (lifetimes kept), so that only real paths are read.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !ident_before(&chars, i) {
            // A raw string: r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            while j < chars.len() {
                if chars[j] == '"' && (0..hashes).all(|h| chars.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{1F600}'), or a lifetime.
            if next == Some('\\') {
                let mut j = i + 2;
                while j < chars.len() && chars[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
                out.push_str("' '");
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// `code` without its `#[cfg(test)]` modules: a unit test may reach
/// anywhere in the crate without that being the module's own import.
fn without_tests(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        let Some(open) = after.find(['{', ';']) else {
            rest = "";
            break;
        };
        if !after[..open].contains("mod ") || after.as_bytes()[open] == b';' {
            out.push_str("#[cfg(test)]");
            rest = &after["#[cfg(test)]".len()..];
            continue;
        }
        let mut depth = 0;
        let mut end = after.len();
        for (i, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn ident_before(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// Every path that starts with `crate`, `super` or `self`, its `use`
/// groups expanded, as written (`super` and `self` not yet resolved).
fn paths(code: &str) -> Vec<Vec<String>> {
    let chars: Vec<char> = code.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if ident_before(&chars, i) {
            i += 1;
            continue;
        }
        let word: String = chars[i..]
            .iter()
            .take_while(|c| c.is_alphanumeric() || **c == '_')
            .collect();
        if matches!(word.as_str(), "crate" | "super" | "self")
            && chars.get(i + word.len()..i + word.len() + 2) == Some(&[':', ':'][..])
        {
            let (tails, end) = path_tail(&chars, i + word.len() + 2);
            for mut tail in tails {
                tail.insert(0, word.clone());
                found.push(tail);
            }
            i = end;
        } else {
            i += word.len().max(1);
        }
    }
    found
}

/// The segments after a `::`: one path, or several from a `{…}` group.
fn path_tail(chars: &[char], mut i: usize) -> (Vec<Vec<String>>, usize) {
    while chars.get(i).is_some_and(|c| c.is_whitespace()) {
        i += 1;
    }
    if chars.get(i) == Some(&'{') {
        let mut all = Vec::new();
        i += 1;
        loop {
            while chars.get(i).is_some_and(|c| c.is_whitespace() || *c == ',') {
                i += 1;
            }
            match chars.get(i) {
                None => break,
                Some('}') => {
                    i += 1;
                    break;
                }
                _ => {}
            }
            let (tails, end) = path_tail(chars, i);
            all.extend(tails);
            // Skip what follows the item (`as name`) up to its comma or brace.
            i = end;
            while chars.get(i).is_some_and(|c| *c != ',' && *c != '}') {
                i += 1;
            }
        }
        return (all, i);
    }
    let word: String = chars[i..]
        .iter()
        .take_while(|c| c.is_alphanumeric() || **c == '_')
        .collect();
    if word.is_empty() {
        return (vec![Vec::new()], i + 1);
    }
    i += word.len();
    if chars.get(i..i + 2) == Some(&[':', ':'][..]) {
        let (tails, end) = path_tail(chars, i + 2);
        let tails = tails
            .into_iter()
            .map(|mut t| {
                t.insert(0, word.clone());
                t
            })
            .collect();
        return (tails, end);
    }
    (vec![vec![word]], i)
}

/// `path` (as written in the file of `module`) from the crate root.
fn resolve(module: &[String], path: &[String]) -> Vec<String> {
    let mut at: Vec<String> = Vec::new();
    let mut rest = path;
    match path.first().map(String::as_str) {
        Some("crate") => rest = &path[1..],
        Some("self") => {
            at = module.to_vec();
            rest = &path[1..];
        }
        Some("super") => {
            at = module.to_vec();
            while rest.first().map(String::as_str) == Some("super") {
                at.pop();
                rest = &rest[1..];
            }
        }
        _ => {}
    }
    at.extend(rest.iter().cloned());
    at
}

/// An import of one member of a folder by another, with the file it is in.
type Edges = BTreeMap<Vec<String>, BTreeMap<String, BTreeMap<String, BTreeSet<String>>>>;

/// What is wrong with the tree of `sources` (empty: nothing).
fn problems(sources: &[Source]) -> Vec<String> {
    let modules: BTreeSet<Vec<String>> = sources
        .iter()
        .flat_map(|s| (1..=s.module.len()).map(|n| s.module[..n].to_vec()))
        .collect();
    let mut edges: Edges = BTreeMap::new();
    let mut problems = Vec::new();
    for source in sources {
        if source.lines > MAX_LINES {
            problems.push(format!(
                "{} has {} lines (at most {MAX_LINES}): split it along a seam",
                source.path, source.lines
            ));
        }
        for path in paths(&source.code) {
            let full = resolve(&source.module, &path);
            // The module the path lands in: its longest known prefix.
            let Some(target) = (1..=full.len())
                .rev()
                .map(|n| full[..n].to_vec())
                .find(|m| modules.contains(m))
            else {
                continue;
            };
            // In every folder holding both, one member imports another.
            for depth in 0..source.module.len().min(target.len()) {
                if source.module[..depth] != target[..depth] {
                    break;
                }
                let (from, to) = (&source.module[depth], &target[depth]);
                if from != to {
                    edges
                        .entry(source.module[..depth].to_vec())
                        .or_default()
                        .entry(from.clone())
                        .or_default()
                        .entry(to.clone())
                        .or_default()
                        .insert(source.path.clone());
                    break;
                }
            }
        }
    }
    for (folder, graph) in &edges {
        for circle in circles(graph) {
            let place = if folder.is_empty() {
                "top-level modules".to_owned()
            } else {
                format!("the files of src/{}/", folder.join("/"))
            };
            // Every import between the members of the circle, with its files.
            let links: Vec<String> = circle
                .iter()
                .flat_map(|a| {
                    graph[a]
                        .iter()
                        .filter(|(b, _)| circle.contains(b))
                        .map(move |(b, files)| {
                            let files: Vec<&str> = files.iter().map(String::as_str).collect();
                            format!("{a} → {b} ({})", files.join(", "))
                        })
                })
                .collect();
            problems.push(format!(
                "an import circle between {place}: {}",
                links.join("; ")
            ));
        }
    }
    let layer = |m: &str| LAYERS.iter().position(|l| l.contains(&m));
    if let Some(top) = edges.get(&Vec::new()) {
        let mut named: BTreeSet<&String> = top.keys().collect();
        named.extend(top.values().flat_map(|to| to.keys()));
        for m in named {
            if layer(m).is_none() {
                problems.push(format!(
                    "the top-level module {m} has no layer: place it in LAYERS (tests/it/architecture.rs) and docs/development.md"
                ));
            }
        }
        for (from, to) in top {
            for (target, files) in to {
                if let (Some(a), Some(b)) = (layer(from), layer(target))
                    && b > a
                {
                    let files: Vec<&str> = files.iter().map(String::as_str).collect();
                    problems.push(format!(
                        "{from} (layer {a}) imports {target}, a layer above it ({b}), in {}",
                        files.join(", ")
                    ));
                }
            }
        }
    }
    problems
}

/// The circles of a graph: the members of each of its strongly connected
/// parts of two or more.
fn circles(graph: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>) -> Vec<Vec<String>> {
    let nodes: BTreeSet<&String> = graph
        .keys()
        .chain(graph.values().flat_map(|to| to.keys()))
        .collect();
    let reach = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(n) = todo.pop() {
            for next in graph.get(&n).into_iter().flat_map(|to| to.keys()) {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&String, BTreeSet<String>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut done = BTreeSet::new();
    let mut found = Vec::new();
    for n in &nodes {
        if done.contains(*n) || !reached[n].contains(*n) {
            continue;
        }
        let part: BTreeSet<&String> = nodes
            .iter()
            .copied()
            .filter(|m| reached[n].contains(*m) && reached[m].contains(*n))
            .collect();
        done.extend(part.iter().map(|m| (*m).clone()));
        found.push(part.iter().map(|m| (*m).clone()).collect());
    }
    found
}

fn read_tree(root: &Path, dir: &Path, out: &mut Vec<Source>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            read_tree(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            out.push(Source {
                module: module_of(&rel),
                path: format!("src/{rel}"),
                lines: text.lines().count(),
                code: without_tests(&code_only(&text)),
            });
        }
    }
}

fn source(path: &str, text: &str) -> Source {
    Source {
        path: format!("src/{path}"),
        module: module_of(path),
        code: without_tests(&code_only(text)),
        lines: text.lines().count(),
    }
}

#[test]
fn the_source_tree_keeps_its_architecture() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = Vec::new();
    read_tree(&root, &root, &mut sources);
    assert!(sources.len() > 50, "read {} files", sources.len());
    let problems = problems(&sources);
    assert!(
        problems.is_empty(),
        "the architecture has slipped:\n- {}",
        problems.join("\n- ")
    );
}

/// The guard itself: each kind of slip in a small tree is reported.
#[test]
fn the_guard_sees_circles_back_imports_and_long_files() {
    let clean = [
        source("lib.rs", "pub mod time; pub mod store;"),
        source("time.rs", "pub fn now() {}"),
        source(
            "store/mod.rs",
            "mod rows; mod sql;\nuse crate::time::now; // crate::billing in a comment\n",
        ),
        source(
            "store/rows.rs",
            "use super::sql::{self, Query as Q};\nlet s = \"super::rows\";",
        ),
        source(
            "store/sql.rs",
            "use crate::time;\nfn f<'a>(x: &'a str) -> char { 'x' }\n#[cfg(test)]\nmod tests { use super::rows; }",
        ),
    ];
    assert_eq!(problems(&clean), Vec::<String>::new());

    // A back-import between top-level modules: a circle, and a layer broken.
    let mut back = clean.to_vec();
    back.push(source(
        "time/extra.rs",
        "use crate::store::{rows, sql::Query};",
    ));
    let found = problems(&back).join("\n");
    assert!(
        found.contains("an import circle between top-level modules"),
        "{found}"
    );
    assert!(found.contains("time (layer 0) imports store"), "{found}");
    assert!(found.contains("src/time/extra.rs"), "{found}");

    // Two files of one folder that import each other.
    let mut siblings = clean.to_vec();
    siblings[4] = source("store/sql.rs", "fn f() { super::rows::go() }");
    let found = problems(&siblings).join("\n");
    assert!(
        found.contains("the files of src/store/: rows → sql"),
        "{found}"
    );

    // A file too long.
    let long = [source("time.rs", &"// a line\n".repeat(MAX_LINES + 1))];
    assert!(
        problems(&long)
            .join("\n")
            .contains("src/time.rs has 701 lines")
    );
}
