//! Build script: embeds `migrations/public/*.sql` and `migrations/tenant/*.sql` (in file-name
//! order) and every file under `static/` into the binary, so `stampede` runs from
//! any directory with nothing beside it.
//!
//! A build script rather than `include_dir` or `rust-embed`: watching the
//! directories (`rerun-if-changed`) rebuilds when a file is added, which
//! `include_dir` does not notice on stable Rust, and debug builds embed too,
//! where `rust-embed` reads from disk unless told otherwise. ETags are made
//! from the bytes when served (`web::statics`), so nothing else is generated.

use std::{env, fs, path::Path};

fn main() {
    let root = env::var("CARGO_MANIFEST_DIR").unwrap();
    let mut out = String::new();
    for (name, dir) in [
        ("PUBLIC", "migrations/public"),
        ("TENANT", "migrations/tenant"),
    ] {
        let dir = Path::new(&root).join(dir);
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut files: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "sql"))
            .collect();
        files.sort();
        out.push_str(&format!("pub static {name}: &[(&str, &str)] = &[\n"));
        for f in files {
            println!("cargo:rerun-if-changed={}", f.display());
            out.push_str(&format!(
                "    ({:?}, include_str!({:?})),\n",
                f.file_name().unwrap().to_str().unwrap(),
                f.display().to_string()
            ));
        }
        out.push_str("];\n");
    }
    fs::write(
        Path::new(&env::var("OUT_DIR").unwrap()).join("migrations.rs"),
        out,
    )
    .unwrap();

    let static_dir = Path::new(&root).join("static");
    println!("cargo:rerun-if-changed={}", static_dir.display());
    let mut files = Vec::new();
    collect(&static_dir, &mut files);
    files.sort();
    let mut out = String::from("pub static FILES: &[(&str, &[u8])] = &[\n");
    for f in files {
        println!("cargo:rerun-if-changed={}", f.display());
        let rel = f
            .strip_prefix(&static_dir)
            .unwrap()
            .to_str()
            .unwrap()
            .replace('\\', "/");
        out.push_str(&format!(
            "    ({rel:?}, include_bytes!({:?})),\n",
            f.display().to_string()
        ));
    }
    out.push_str("];\n");
    fs::write(
        Path::new(&env::var("OUT_DIR").unwrap()).join("statics.rs"),
        out,
    )
    .unwrap();
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
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
