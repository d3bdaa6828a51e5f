//! The schema owner's role for migrations: `DB_MIGRATION_USER`,
//! `DB_MIGRATION_PASSWORD`, `DB_MIGRATION_PASSWORD_FILE`.

use pgline_config::{APPLICATION_NAME, MIGRATION_APPLICATION_NAME};

use crate::secret_files::secret_file;
use crate::{PRODUCTION, err, load, ok};

#[test]
fn without_a_migration_user_migrations_use_the_service_role() {
    let config = ok(&[("DB_USER", "pgline"), ("DB_PASSWORD", "pw")]);
    assert_eq!(config.database.migration_user, None);
    assert_eq!(config.migration_user(), "pgline");
    let pg = config.migration_tokio_postgres();
    assert_eq!(pg.get_user(), Some("pgline"));
    assert_eq!(pg.get_password(), Some(&b"pw"[..]));
    assert_eq!(pg.get_application_name(), Some(MIGRATION_APPLICATION_NAME));
    assert_eq!(
        config.to_tokio_postgres().get_application_name(),
        Some(APPLICATION_NAME)
    );
}

#[test]
fn a_migration_role_has_its_own_credentials_and_the_same_server() {
    let config = ok(&[
        (
            "DATABASE_URL",
            "postgres://pgline_app:app-pw@db1:5433,db2/plant",
        ),
        ("DB_MIGRATION_USER", "pgline_owner"),
        ("DB_MIGRATION_PASSWORD", "owner-pw"),
        ("DB_SSL", "require"),
    ]);
    let owner = config.migration_tokio_postgres();
    let app = config.to_tokio_postgres();
    assert_eq!(owner.get_user(), Some("pgline_owner"));
    assert_eq!(owner.get_password(), Some(&b"owner-pw"[..]));
    assert_eq!(app.get_user(), Some("pgline_app"));
    assert_eq!(app.get_password(), Some(&b"app-pw"[..]));
    assert_eq!(owner.get_hosts(), app.get_hosts());
    assert_eq!(owner.get_ports(), app.get_ports());
    assert_eq!(owner.get_dbname(), app.get_dbname());
    assert_eq!(owner.get_ssl_mode(), app.get_ssl_mode());
    assert_eq!(owner.get_options(), app.get_options());
    let shown = format!("{config:?}");
    assert!(
        !shown.contains("owner-pw") && !shown.contains("app-pw"),
        "{shown}"
    );
}

#[test]
fn a_migration_user_without_a_password_never_gets_the_service_password() {
    let config = ok(&[
        ("DB_USER", "pgline_app"),
        ("DB_PASSWORD", "app-pw"),
        ("DB_MIGRATION_USER", "pgline_owner"),
    ]);
    assert_eq!(config.migration_tokio_postgres().get_password(), None);
    // The same role named twice keeps its password.
    let same = ok(&[
        ("DB_USER", "pgline"),
        ("DB_PASSWORD", "pw"),
        ("DB_MIGRATION_USER", "pgline"),
    ]);
    assert_eq!(
        same.migration_tokio_postgres().get_password(),
        Some(&b"pw"[..])
    );
}

#[test]
fn the_migration_password_may_come_from_a_file() {
    let file = secret_file(b"owner-from-file\n", 0o600);
    let file_path = file.path().to_str().unwrap().to_owned();
    let config = ok(&[
        ("DB_MIGRATION_USER", "pgline_owner"),
        ("DB_MIGRATION_PASSWORD_FILE", &file_path),
    ]);
    assert_eq!(
        config.migration_tokio_postgres().get_password(),
        Some(&b"owner-from-file"[..])
    );
    assert_eq!(
        err(&[
            ("DB_MIGRATION_USER", "pgline_owner"),
            ("DB_MIGRATION_PASSWORD", "direct"),
            ("DB_MIGRATION_PASSWORD_FILE", &file_path),
        ]),
        "DB_MIGRATION_PASSWORD_FILE: conflicts with DB_MIGRATION_PASSWORD: \
         give the migration role's password once, either directly or in a file"
    );
}

#[test]
fn a_migration_password_without_a_migration_user_is_an_error() {
    assert_eq!(
        err(&[("DB_MIGRATION_PASSWORD", "owner-pw")]),
        "DB_MIGRATION_PASSWORD: is set but DB_MIGRATION_USER is not; set DB_MIGRATION_USER to the role \
         that owns the schema, or remove it (migrations then run as DB_USER with its password)"
    );
}

#[test]
fn production_requires_the_migration_password_when_the_role_differs() {
    let mut vars = PRODUCTION.to_vec();
    vars.push(("DB_MIGRATION_USER", "pgline_owner"));
    let error = load(&vars).unwrap_err();
    assert_eq!(error.problems().len(), 1, "{error}");
    assert_eq!(error.problems()[0].setting, "DB_MIGRATION_PASSWORD");
    assert!(
        error.problems()[0]
            .message
            .starts_with("required in the production profile when DB_MIGRATION_USER is set"),
        "{error}"
    );
    vars.push(("DB_MIGRATION_PASSWORD", "owner-pw"));
    ok(&vars);
    let mut same = PRODUCTION.to_vec();
    same.push(("DB_MIGRATION_USER", "pgline"));
    ok(&same);
}

#[test]
fn the_migration_password_is_never_repeated_in_errors() {
    let toml = crate::toml_file("[database]\nmigration_user = \"o\"\nmigration_password = 12345\n");
    let toml_path = toml.path().to_str().unwrap().to_owned();
    let text = err(&[("PGLINE_CONFIG", &toml_path)]);
    assert_eq!(
        text,
        format!("database.migration_password in {toml_path}: expected a string")
    );
}
