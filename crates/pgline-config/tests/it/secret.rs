use pgline_config::Secret;

use crate::{PRODUCTION, load, ok};

#[test]
fn secret_shows_stars() {
    let secret = Secret::new("hunter2-secret");
    assert_eq!(format!("{secret}"), "***");
    assert_eq!(format!("{secret:?}"), "***");
    assert_eq!(format!("{secret:#?}"), "***");
    assert_eq!(secret.expose(), "hunter2-secret");
}

#[test]
fn config_debug_never_shows_the_password() {
    let config = ok(PRODUCTION);
    assert_eq!(
        config.database.password.as_ref().map(Secret::expose),
        Some("hunter2-secret")
    );
    for text in [
        format!("{config:?}"),
        format!("{config:#?}"),
        format!("{:?}", config.database),
    ] {
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("***"), "{text}");
    }
}

#[test]
fn password_from_url_never_in_debug() {
    let config = ok(&[("DATABASE_URL", "postgres://u:hunter2-secret@db/x")]);
    assert!(!format!("{config:?}").contains("hunter2"));
}

#[test]
fn errors_never_show_the_password() {
    let mut vars = PRODUCTION.to_vec();
    vars.extend([
        ("DB_POOL_MAX", "abc"),
        ("NODE_ENV", "staging"),
        ("DATABASE_URL", "postgres://u:hunter2-secret@db:x/y"),
    ]);
    let error = load(&vars).unwrap_err();
    let text = format!("{error} {error:?}");
    assert!(!text.contains("hunter2"), "{text}");
}
