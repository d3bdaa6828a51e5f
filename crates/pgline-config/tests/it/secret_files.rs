//! `DB_PASSWORD_FILE` and `DB_MIGRATION_PASSWORD_FILE`: secrets from files,
//! as container and Kubernetes secrets deliver them.

use std::io::Write;

use crate::{PRODUCTION, err, load, ok, production_without, toml_file};

/// A temporary file holding exactly `bytes`, with permissions `mode` on Unix.
pub fn secret_file(bytes: &[u8], mode: u32) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("create a temporary file");
    file.write_all(bytes).expect("write the temporary file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(mode))
            .expect("set the file's mode");
    }
    #[cfg(not(unix))]
    let _ = mode;
    file
}

fn path(file: &tempfile::NamedTempFile) -> String {
    file.path().to_str().expect("utf-8 temp path").to_owned()
}

#[test]
fn the_password_comes_from_the_file_without_its_trailing_newline() {
    for content in [
        &b"s3cret pass\n"[..],
        b"s3cret pass\r\n",
        b"s3cret pass",
        b"s3cret pass\n\n",
    ] {
        let file = secret_file(content, 0o600);
        let config = ok(&[("DB_PASSWORD_FILE", &path(&file))]);
        let db = &config.database;
        assert_eq!(
            db.password.as_ref().map(|p| p.expose()),
            Some("s3cret pass")
        );
        let source = db.password_file.as_ref().expect("the file is recorded");
        assert_eq!(source.setting, "DB_PASSWORD_FILE");
        assert_eq!(source.path, file.path());
        assert!(!format!("{config:?}").contains("s3cret"));
        assert_eq!(
            config.to_tokio_postgres().get_password(),
            Some(&b"s3cret pass"[..])
        );
    }
}

#[test]
fn a_password_file_satisfies_production() {
    let file = secret_file(b"hunter2-from-file\n", 0o400);
    let mut vars = production_without("DB_PASSWORD");
    let file_path = path(&file);
    vars.push(("DB_PASSWORD_FILE", &file_path));
    let config = ok(&vars);
    assert_eq!(
        config.database.password.as_ref().map(|p| p.expose()),
        Some("hunter2-from-file")
    );
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());
}

#[test]
fn production_says_the_file_is_an_alternative() {
    let error = load(&production_without("DB_PASSWORD")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "DB_PASSWORD: required in the production profile: set DB_PASSWORD to the user's password, \
         or DB_PASSWORD_FILE to a file that holds it, or give password in DATABASE_URL, \
         or database.password in the configuration file"
    );
}

#[test]
fn the_variable_and_the_file_together_conflict() {
    let file = secret_file(b"from-file\n", 0o600);
    let file_path = path(&file);
    assert_eq!(
        err(&[("DB_PASSWORD", "direct"), ("DB_PASSWORD_FILE", &file_path)]),
        "DB_PASSWORD_FILE: conflicts with DB_PASSWORD: give the password once, either directly or in a file"
    );
    let text = err(&[
        ("DATABASE_URL", "postgres://u:in-url@db/plant"),
        ("DB_PASSWORD_FILE", &file_path),
    ]);
    assert_eq!(
        text,
        "DB_PASSWORD_FILE: conflicts with DATABASE_URL (password): give the password once, either directly or in a file"
    );
    assert!(!text.contains("in-url") && !text.contains("from-file"));
}

#[test]
fn an_unreadable_file_is_named_with_the_variable() {
    assert_eq!(
        err(&[("DB_PASSWORD_FILE", "/nonexistent/db-password")]),
        "DB_PASSWORD_FILE: cannot read /nonexistent/db-password: No such file or directory (os error 2)"
    );
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().to_str().unwrap().to_owned();
    assert_eq!(
        err(&[("DB_PASSWORD_FILE", &dir_path)]),
        format!("DB_PASSWORD_FILE: cannot read {dir_path}: it is a directory")
    );
}

#[test]
fn empty_huge_and_binary_files_are_refused_without_their_content() {
    let empty = secret_file(b"\n", 0o600);
    assert_eq!(
        err(&[("DB_PASSWORD_FILE", &path(&empty))]),
        format!("DB_PASSWORD_FILE: {} is empty", path(&empty))
    );
    let huge = secret_file(&b"x".repeat(100 * 1024), 0o600);
    let text = err(&[("DB_PASSWORD_FILE", &path(&huge))]);
    assert!(
        text.contains("is larger than 64 KiB; expected a file that holds only the secret"),
        "{text}"
    );
    let binary = secret_file(b"pw\xff\xfe\n", 0o600);
    assert_eq!(
        err(&[("DB_PASSWORD_FILE", &path(&binary))]),
        format!(
            "DB_PASSWORD_FILE: {} is not valid UTF-8 text",
            path(&binary)
        )
    );
}

#[cfg(unix)]
#[test]
fn a_file_readable_by_others_draws_a_warning() {
    let loose = secret_file(b"pw\n", 0o644);
    let config = ok(&[("DB_PASSWORD_FILE", &path(&loose))]);
    let warning = config
        .warnings()
        .into_iter()
        .find(|w| w.starts_with("DB_PASSWORD_FILE"))
        .expect("a warning about the file");
    assert_eq!(
        warning,
        format!(
            "DB_PASSWORD_FILE: {} is readable by group or others (mode 0644); restrict it with chmod 600 \
             (Kubernetes: defaultMode 0400)",
            path(&loose)
        )
    );
    for mode in [0o600, 0o400] {
        let tight = secret_file(b"pw\n", mode);
        let config = ok(&[("DB_PASSWORD_FILE", &path(&tight))]);
        assert!(
            !config
                .warnings()
                .iter()
                .any(|w| w.contains("DB_PASSWORD_FILE")),
            "{:?}",
            config.warnings()
        );
    }
    let group = secret_file(b"pw\n", 0o640);
    let config = ok(&[("DB_PASSWORD_FILE", &path(&group))]);
    assert!(config.warnings().iter().any(|w| w.contains("mode 0640")));
}

#[test]
fn the_file_key_in_toml_is_named_as_written() {
    let secret = secret_file(b"pw-from-secret\n", 0o600);
    let toml = toml_file(&format!(
        "[database]\npassword_file = {:?}\n",
        path(&secret)
    ));
    let toml_path = toml.path().to_str().unwrap().to_owned();
    let config = ok(&[("PGLINE_CONFIG", &toml_path)]);
    assert_eq!(
        config.database.password.as_ref().map(|p| p.expose()),
        Some("pw-from-secret")
    );
    assert_eq!(
        config
            .database
            .password_file
            .as_ref()
            .map(|f| f.setting.clone()),
        Some(format!("database.password_file in {toml_path}"))
    );
    let both = toml_file(&format!(
        "[database]\npassword = \"x\"\npassword_file = {:?}\n",
        path(&secret)
    ));
    let both_path = both.path().to_str().unwrap().to_owned();
    assert_eq!(
        err(&[("PGLINE_CONFIG", &both_path)]),
        format!(
            "database.password_file in {both_path}: conflicts with database.password in {both_path}: \
             give the password once, either directly or in a file"
        )
    );
}

#[test]
fn production_fixture_still_valid() {
    ok(PRODUCTION);
}
