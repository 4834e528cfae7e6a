//! The layering guard: the model and the ports never reach an engine module.
//!
//! DESIGN.md sets three floors inside crm-core: the model (`model`, `ids`, `error`,
//! `clock`, `secret`, ...) <- the ports (`store`, `channel`, `inbound`, `approval`,
//! `enrichment_provider`) <- the engines (`scoring`, `enrichment`, `outreach`, `jobs`,
//! `anomaly`, `intake`, `access`) <- `engine`. The store crates and crm-channels import the model
//! and the ports only. This test reads the source files of those floors and crates and
//! fails, naming file and line, on any path into an engine module: `use` items, paths
//! in code, and doc links alike (a doc link is a dependency too, and it is how the next
//! import starts).

// A test file: a helper that cannot read the sources must fail the test loudly.
#![allow(clippy::panic, clippy::expect_used)]

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

/// The engine modules of crm-core (and the facade above them).
const ENGINES: &[&str] = &[
    "scoring",
    "enrichment",
    "outreach",
    "jobs",
    "anomaly",
    "intake",
    "access",
    "engine",
];

/// The files of crm-core below the engines, relative to crm-core/src: directories are
/// read recursively.
const CORE_LOWER_FLOORS: &[&str] = &[
    // The model floor.
    "model",
    "ids.rs",
    "error.rs",
    "clock.rs",
    "secret.rs",
    "money.rs",
    "address.rs",
    "text_enum.rs",
    // The ports.
    "store",
    "channel.rs",
    "channel",
    "inbound.rs",
    "approval.rs",
    "enrichment_provider.rs",
];

/// Crates that may import crm-core's model and ports but no engine, relative to the
/// workspace root.
const PORT_CLIENTS: &[&str] = &[
    "crm-channels/src",
    "crm-store-memory/src",
    "crm-store-postgres/src",
];

/// One path from a file into an engine module.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Violation {
    /// 1-based line of the path's start.
    line: usize,
    /// The engine module reached.
    engine: String,
    /// The path as written, up to the engine's name.
    path: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: `{}` reaches the engine module `{}`",
            self.line, self.path, self.engine
        )
    }
}

/// How to read paths in one file.
#[derive(Debug, Clone)]
struct Scan<'a> {
    /// Names that denote crm-core's root in this file (`crate`, `crm_core`).
    roots: &'a [&'a str],
    /// The file's module path inside crm-core (`["store", "scoring"]` for
    /// src/store/scoring.rs), so that `super::` chains resolve; `None` outside crm-core,
    /// where `super::` never reaches crm-core.
    module: Option<Vec<String>>,
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && bytes[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The identifier starting at `i` (after whitespace), and the index after it.
fn ident_at(src: &str, i: usize) -> Option<(&str, usize)> {
    let bytes = src.as_bytes();
    let start = skip_ws(bytes, i);
    let mut end = start;
    while end < bytes.len() && is_ident_byte(bytes[end]) {
        end += 1;
    }
    (end > start).then(|| (&src[start..end], end))
}

/// Whether `word` starts at `i` as a whole identifier followed by `::`.
fn word_path_at(src: &str, i: usize, word: &str) -> Option<usize> {
    let bytes = src.as_bytes();
    if !bytes[i..].starts_with(word.as_bytes()) || (i > 0 && is_ident_byte(bytes[i - 1])) {
        return None;
    }
    let after = skip_ws(bytes, i + word.len());
    bytes[after..].starts_with(b"::").then_some(after + 2)
}

/// The first segments named by the path part at `i`, each with its offset: one
/// identifier, or each top-level item of a `{...}` group (which may span lines).
fn first_segments(src: &str, i: usize) -> Vec<(&str, usize)> {
    let bytes = src.as_bytes();
    let i = skip_ws(bytes, i);
    if bytes.get(i) != Some(&b'{') {
        return ident_at(src, i)
            .map(|(id, end)| vec![(id, end - id.len())])
            .unwrap_or_default();
    }
    let mut found = Vec::new();
    let mut depth = 0usize;
    let mut expect_item = false;
    let mut j = i;
    while j < bytes.len() {
        match bytes[j] {
            b'{' => {
                depth += 1;
                expect_item = depth == 1;
                j += 1;
            }
            b'}' => {
                depth -= 1;
                j += 1;
                if depth == 0 {
                    break;
                }
            }
            b',' => {
                expect_item = depth == 1;
                j += 1;
            }
            b if b.is_ascii_whitespace() => j += 1,
            _ => {
                if expect_item && let Some((id, end)) = ident_at(src, j) {
                    found.push((id, end - id.len()));
                    expect_item = false;
                    j = end;
                    continue;
                }
                expect_item = false;
                j += 1;
            }
        }
    }
    found
}

/// A violation for the engine named at `at`, reached by the path that starts at
/// `start`.
fn violation(src: &str, start: usize, at: usize, engine: &str) -> Violation {
    let written: String = src[start..at + engine.len()]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let path = match written.find('{') {
        Some(brace) => format!("{}{{..., {engine}", &written[..brace]),
        None => written,
    };
    Violation {
        line: src[..at].matches('\n').count() + 1,
        engine: engine.to_owned(),
        path,
    }
}

/// Every path in `src` that reaches an engine module of crm-core.
fn engine_paths(src: &str, scan: &Scan<'_>) -> Vec<Violation> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if let Some(after) = scan.roots.iter().find_map(|r| word_path_at(src, i, r)) {
            for (seg, at) in first_segments(src, after) {
                if ENGINES.contains(&seg) {
                    out.push(violation(src, i, at, seg));
                }
            }
            i = after;
            continue;
        }
        if let (Some(module), Some(mut after)) = (&scan.module, word_path_at(src, i, "super")) {
            // Only the start of a chain: `a::super::` is not ours to resolve.
            if !src[..i].trim_end().ends_with("::") {
                let mut ups = 1;
                while let Some(next) = word_path_at(src, skip_ws(bytes, after), "super") {
                    ups += 1;
                    after = next;
                }
                // A chain that climbs to the crate root names a root item next; a
                // shorter one stays inside the file's own (scanned, so non-engine)
                // top-level module.
                if module.len() <= ups {
                    for (seg, at) in first_segments(src, after) {
                        if ENGINES.contains(&seg) {
                            out.push(violation(src, i, at, seg));
                        }
                    }
                }
                i = after;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// Every `.rs` file under `path` (or `path` itself), sorted.
fn rust_files(path: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if path.is_file() {
        files.push(path.to_path_buf());
    } else {
        let entries =
            fs::read_dir(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        for entry in entries {
            let entry = entry.unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            files.extend(rust_files(&entry.path()));
        }
    }
    files.retain(|f| f.extension().is_some_and(|e| e == "rs"));
    files.sort();
    files
}

/// The module path of a file under crm-core/src (`store/mod.rs` -> `["store"]`).
fn module_path(src_dir: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src_dir).unwrap_or(file);
    let mut segs: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if segs.last().is_some_and(|s| s == "mod" || s == "lib") {
        segs.pop();
    }
    segs
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crm-core sits in the workspace root")
        .to_path_buf()
}

/// Scans `files` and returns one line per violation, `file:line: ...`.
fn report(files: &[PathBuf], scan_for: impl Fn(&Path) -> Scan<'static>) -> Vec<String> {
    let root = workspace_root();
    let mut lines = Vec::new();
    for file in files {
        let src = fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let shown = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        for v in engine_paths(&src, &scan_for(file)) {
            lines.push(format!("{shown}:{v}"));
        }
    }
    lines
}

#[test]
fn model_and_ports_of_crm_core_import_no_engine() {
    let src_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files: Vec<PathBuf> = CORE_LOWER_FLOORS
        .iter()
        .flat_map(|p| {
            let path = src_dir.join(p);
            assert!(path.exists(), "{} is listed but missing", path.display());
            rust_files(&path)
        })
        .collect();
    // The guard must read something, or it proves nothing.
    for must in [
        "store/mod.rs",
        "model/mod.rs",
        "store/scoring.rs",
        "channel.rs",
    ] {
        assert!(
            files.contains(&src_dir.join(must)),
            "the layering scan did not read src/{must}"
        );
    }
    let violations = report(&files, |file| Scan {
        roots: &["crate", "crm_core"],
        module: Some(module_path(&src_dir, file)),
    });
    assert!(
        violations.is_empty(),
        "the model and the ports must not import an engine module (move the type down \
         to crm_core::model or the port, and re-export it from the engine):\n{}",
        violations.join("\n")
    );
}

#[test]
fn stores_and_channels_import_no_engine_of_crm_core() {
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in PORT_CLIENTS {
        let path = root.join(dir);
        assert!(path.is_dir(), "{} is missing", path.display());
        let found = rust_files(&path);
        assert!(
            found.iter().any(|f| f.ends_with("lib.rs")),
            "no lib.rs under {dir}"
        );
        files.extend(found);
    }
    let violations = report(&files, |_| Scan {
        roots: &["crm_core"],
        module: None,
    });
    assert!(
        violations.is_empty(),
        "store and channel crates import crm-core's model and ports, never an engine \
         module:\n{}",
        violations.join("\n")
    );
}

// The scanner itself: each planted violation is found, each clean path is not.

fn core_scan(module: &[&str]) -> Scan<'static> {
    Scan {
        roots: &["crate", "crm_core"],
        module: Some(module.iter().map(|s| (*s).to_owned()).collect()),
    }
}

fn engines_found(src: &str, scan: &Scan<'_>) -> Vec<(usize, String)> {
    engine_paths(src, scan)
        .into_iter()
        .map(|v| (v.line, v.engine))
        .collect()
}

#[test]
fn scanner_finds_a_planted_use_of_an_engine() {
    let src = "use std::fmt;\nuse crate::ids::WorkspaceId;\nuse crate::scoring::model::Tier;\n";
    let found = engine_paths(src, &core_scan(&["store", "scoring"]));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].line, 3);
    assert_eq!(found[0].engine, "scoring");
    assert_eq!(found[0].path, "crate::scoring");
}

#[test]
fn scanner_finds_engines_in_doc_links_and_code_paths() {
    let src = "/// See [`CachePolicy`](crate::enrichment::CachePolicy).\n\
               fn f() { let _ = crate :: jobs::Worker::new(); }\n\
               //! Example: `use crm_core::anomaly::Detector;`\n";
    assert_eq!(
        engines_found(src, &core_scan(&["model", "enrichment"])),
        vec![
            (1, "enrichment".to_owned()),
            (2, "jobs".to_owned()),
            (3, "anomaly".to_owned())
        ]
    );
}

#[test]
fn scanner_finds_engines_inside_multiline_use_groups() {
    let src = "use crate::{\n    ids::WorkspaceId,\n    model::{Contact, Account},\n    outreach::dispatch::DryRunChannel,\n    intake,\n};\n";
    assert_eq!(
        engines_found(src, &core_scan(&["store"])),
        vec![(4, "outreach".to_owned()), (5, "intake".to_owned())]
    );
}

#[test]
fn scanner_resolves_super_chains_against_the_module_path() {
    // From crate::store::scoring, `super::super::` is the crate root.
    let src = "use super::Page;\nuse super::super::jobs::Job;\n";
    assert_eq!(
        engines_found(src, &core_scan(&["store", "scoring"])),
        vec![(2, "jobs".to_owned())]
    );
    // From crate::model::scoring::record, `super::` stays inside the model.
    let src = "use super::scoring_model::Tier;\nuse super::super::Actor;\n";
    assert!(engines_found(src, &core_scan(&["model", "scoring", "record"])).is_empty());
    // From crate::store (store/mod.rs), `super::` is the root.
    let src = "pub use super::{model::Contact, anomaly::Rule};\n";
    assert_eq!(
        engines_found(src, &core_scan(&["store"])),
        vec![(1, "anomaly".to_owned())]
    );
}

#[test]
fn scanner_passes_model_and_port_paths_and_lookalikes() {
    let src = "use crate::model::scoring::{ScoringModel, Tier};\n\
               use crate::model::enrichment::LookupKind;\n\
               use crate::store::ScoringStore;\n\
               use crate::enrichment_provider::EnrichmentProvider;\n\
               use crate::channel::dry_run::DryRunChannel;\n\
               let x = mycrate::scoring::f(); // not crm-core\n\
               let scoring = 1; // a word, not a path\n";
    assert!(engines_found(src, &core_scan(&["store"])).is_empty());
}

#[test]
fn scanner_outside_crm_core_reads_only_crm_core_paths() {
    let scan = Scan {
        roots: &["crm_core"],
        module: None,
    };
    let src = "use crate::scoring::Local;\nuse super::super::outreach::X;\n\
               use crm_core::enrichment_provider::Lookup;\n\
               use crm_core::{Money, enrichment::EnrichmentError};\n";
    assert_eq!(
        engines_found(src, &scan),
        vec![(4, "enrichment".to_owned())]
    );
}

#[test]
fn module_paths_follow_the_file_layout() {
    let src = Path::new("/x/src");
    assert_eq!(
        module_path(src, Path::new("/x/src/store/mod.rs")),
        ["store"]
    );
    assert_eq!(
        module_path(src, Path::new("/x/src/model/scoring/record.rs")),
        ["model", "scoring", "record"]
    );
    assert_eq!(
        module_path(src, Path::new("/x/src/channel.rs")),
        ["channel"]
    );
}
