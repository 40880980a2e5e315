//! Build script: embeds `migrations/public/*.sql` and `migrations/tenant/*.sql` (in file-name
//! order) and every file under `static/` into the binary, so `stampede` runs from
//! any directory with nothing beside it.
//!
//! A build script rather than `include_dir` or `rust-embed`: watching the
//! directories (`rerun-if-changed`) rebuilds when a file is added, which
//! `include_dir` does not notice on stable Rust, and debug builds embed too,
//! where `rust-embed` reads from disk unless told otherwise. ETags are made
//! from the bytes when served (`web::statics`), so nothing else is generated.

use std::{
    env, fs,
    path::{Path, PathBuf},
};

fn main() {
    let root = env::var("CARGO_MANIFEST_DIR").unwrap();
    let mut out = String::new();
    for (name, dir) in [
        ("PUBLIC", "migrations/public"),
        ("TENANT", "migrations/tenant"),
    ] {
        let dir = Path::new(&root).join(dir);
        println!("cargo:rerun-if-changed={}", dir.display());
        let files = fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "sql"))
            .collect();
        out.push_str(&table(name, "&str", "include_str", files, |f| {
            f.file_name().unwrap().to_str().unwrap().to_string()
        }));
    }
    write_out("migrations.rs", out);

    let static_dir = Path::new(&root).join("static");
    println!("cargo:rerun-if-changed={}", static_dir.display());
    let mut files = Vec::new();
    collect(&static_dir, &mut files);
    let out = table("FILES", "&[u8]", "include_bytes", files, |f| {
        let rel = f.strip_prefix(&static_dir).unwrap();
        rel.to_str().unwrap().replace('\\', "/")
    });
    write_out("statics.rs", out);
}

/// `pub static {name}: &[(&str, {ty})]` of `files` in name order, each as its
/// `key` and `{include}!(path)`; every file is watched for changes.
fn table(
    name: &str,
    ty: &str,
    include: &str,
    mut files: Vec<PathBuf>,
    key: impl Fn(&Path) -> String,
) -> String {
    files.sort();
    let mut out = format!("pub static {name}: &[(&str, {ty})] = &[\n");
    for f in files {
        println!("cargo:rerun-if-changed={}", f.display());
        out.push_str(&format!(
            "    ({:?}, {include}!({:?})),\n",
            key(&f),
            f.display().to_string()
        ));
    }
    out.push_str("];\n");
    out
}

/// Writes `content` to the file `name` of `OUT_DIR`.
fn write_out(name: &str, content: String) {
    fs::write(Path::new(&env::var("OUT_DIR").unwrap()).join(name), content).unwrap();
}

/// Every file below `dir`, watching each directory.
fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            println!("cargo:rerun-if-changed={}", p.display());
            collect(&p, out);
        } else {
            out.push(p);
        }
    }
}
