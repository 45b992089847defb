//! schema/schema.graphql is the admin API's contract: this test fails when
//! the code's schema and the committed file differ.
//! Regenerate with `UPDATE_SCHEMA=1 cargo test --test schema_sdl`.

use std::path::PathBuf;

fn schema_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("schema")
        .join("schema.graphql")
}

#[test]
fn committed_schema_matches_the_code() {
    let sdl = claude_relay::graphql::schema_sdl();
    let path = schema_path();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &sdl).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed == sdl {
        return;
    }
    let code: Vec<&str> = sdl.lines().collect();
    let file: Vec<&str> = committed.lines().collect();
    let first = code
        .iter()
        .zip(&file)
        .position(|(a, b)| a != b)
        .unwrap_or(code.len().min(file.len()));
    let show = |lines: &[&str]| {
        lines
            .iter()
            .skip(first.saturating_sub(2))
            .take(8)
            .copied()
            .collect::<Vec<_>>()
            .join("\n")
    };
    panic!(
        "schema/schema.graphql differs from the code's schema, first at line {}.\n\
         --- file ---\n{}\n--- code ---\n{}\n\n\
         If the change is intended, regenerate the file and commit it:\n  \
         UPDATE_SCHEMA=1 cargo test --test schema_sdl",
        first + 1,
        show(&file),
        show(&code)
    );
}
