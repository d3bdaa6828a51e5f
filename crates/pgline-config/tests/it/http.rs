//! The HTTP edge of `pgline-server`: body and order limits, station and admin
//! tokens, and what production requires of them.

use pgline_config::{Profile, TokenHash};

use crate::secret_files::secret_file;
use crate::{PRODUCTION, err, ok, toml_file};

/// `printf %s test | sha256sum`.
const TEST_HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
/// `printf %s other | sha256sum`.
const OTHER_HASH: &str = "d9298a10d1b0735837dc4bd85dac641b0f3cef27a47e5d53a54f2f3f5b2fcffa";

fn path(file: &tempfile::NamedTempFile) -> String {
    file.path().to_str().expect("utf-8 temp path").to_owned()
}

#[test]
fn limits_have_sane_defaults_and_can_be_set() {
    let config = ok(&[]);
    assert_eq!(config.server.max_body_bytes, 1024 * 1024);
    assert_eq!(config.server.max_panels_per_order, 1000);
    let config = ok(&[
        ("HTTP_MAX_BODY_BYTES", "65536"),
        ("MAX_PANELS_PER_ORDER", "50"),
    ]);
    assert_eq!(config.server.max_body_bytes, 65536);
    assert_eq!(config.server.max_panels_per_order, 50);
    let file = toml_file("[server]\nmax_body_bytes = 2048\nmax_panels_per_order = 3\n");
    let config = ok(&[("PGLINE_CONFIG", &path(&file))]);
    assert_eq!(
        (
            config.server.max_body_bytes,
            config.server.max_panels_per_order
        ),
        (2048, 3)
    );
}

#[test]
fn limits_out_of_range_are_named() {
    assert_eq!(
        err(&[("HTTP_MAX_BODY_BYTES", "10")]),
        r#"HTTP_MAX_BODY_BYTES: expected a size in bytes from 1024 to 104857600 (100 MiB), e.g. 1048576, got "10""#
    );
    assert_eq!(
        err(&[("MAX_PANELS_PER_ORDER", "0")]),
        r#"MAX_PANELS_PER_ORDER: expected a whole number of panels from 1 to 100000, got "0""#
    );
}

#[test]
fn station_tokens_are_read_from_the_file() {
    let file = secret_file(
        format!("# line 7\nST-01:{TEST_HASH}\nST-02:{OTHER_HASH}\n").as_bytes(),
        0o644,
    );
    let config = ok(&[("STATION_TOKENS_FILE", &path(&file))]);
    let tokens = config.server.auth.station_tokens.as_ref().expect("tokens");
    assert_eq!(tokens.setting, "STATION_TOKENS_FILE");
    assert_eq!(tokens.path, file.path());
    let entries: Vec<(&str, TokenHash)> = tokens
        .tokens
        .iter()
        .map(|t| (t.name.as_str(), t.sha256))
        .collect();
    assert_eq!(
        entries,
        [
            ("ST-01", TokenHash::from_hex(TEST_HASH).unwrap()),
            ("ST-02", TokenHash::from_hex(OTHER_HASH).unwrap()),
        ]
    );
    assert!(config.server.auth.stations_required());
    assert!(!config.server.auth.admin_required());
    assert!(
        !config
            .warnings()
            .iter()
            .any(|w| w.contains("STATION_TOKENS_FILE")),
        "{:?}",
        config.warnings()
    );
}

#[test]
fn a_bad_token_file_names_the_variable_path_and_line_but_not_the_line() {
    let pasted_token = "a3f1".repeat(16);
    let file = secret_file(
        format!("ST-01:{TEST_HASH}\n{pasted_token}\n").as_bytes(),
        0o644,
    );
    let text = err(&[("STATION_TOKENS_FILE", &path(&file))]);
    assert!(
        text.starts_with(&format!(
            "STATION_TOKENS_FILE: {} line 2: expected name:sha256",
            path(&file)
        )),
        "{text}"
    );
    assert!(!text.contains(&pasted_token), "{text}");
    assert_eq!(
        err(&[("STATION_TOKENS_FILE", "/nonexistent/tokens")]),
        "STATION_TOKENS_FILE: cannot read /nonexistent/tokens: No such file or directory (os error 2)"
    );
}

#[test]
fn admin_tokens_may_be_bare_hashes() {
    let file = secret_file(format!("{TEST_HASH}\n").as_bytes(), 0o600);
    let config = ok(&[("ADMIN_TOKEN_FILE", &path(&file))]);
    let admin = config
        .server
        .auth
        .admin_tokens
        .as_ref()
        .expect("admin tokens");
    assert_eq!(admin.tokens[0].name, "admin");
    assert!(config.server.auth.admin_required());
}

#[test]
fn development_without_station_tokens_warns() {
    for profile in ["development", "test"] {
        let config = ok(&[("NODE_ENV", profile)]);
        let warning = config
            .warnings()
            .into_iter()
            .find(|w| w.starts_with("STATION_TOKENS_FILE"))
            .expect("a warning about station authentication");
        assert!(
            warning.contains("station authentication is OFF"),
            "{warning}"
        );
        assert!(warning.contains(profile), "{warning}");
        assert_eq!(config.check_http_auth().ok(), Some(()));
    }
}

#[test]
fn production_requires_station_tokens_and_an_admin_decision() {
    let config = ok(PRODUCTION);
    assert_eq!(config.profile, Profile::Production);
    let error = config.check_http_auth().unwrap_err();
    let settings: Vec<&str> = error
        .problems()
        .iter()
        .map(|p| p.setting.as_str())
        .collect();
    assert_eq!(settings, ["STATION_TOKENS_FILE", "ADMIN_TOKEN_FILE"]);
    assert!(
        error.problems()[0]
            .message
            .starts_with("required in the production profile"),
        "{error}"
    );
    assert!(
        error.problems()[1]
            .message
            .starts_with("required in the production profile unless ADMIN_OPEN=true"),
        "{error}"
    );

    let stations = secret_file(format!("ST-01:{TEST_HASH}\n").as_bytes(), 0o644);
    let admin = secret_file(format!("{OTHER_HASH}\n").as_bytes(), 0o600);
    let (stations_path, admin_path) = (path(&stations), path(&admin));
    let mut open = PRODUCTION.to_vec();
    open.extend([
        ("STATION_TOKENS_FILE", stations_path.as_str()),
        ("ADMIN_OPEN", "true"),
    ]);
    let config = ok(&open);
    assert!(config.server.auth.admin_open);
    assert_eq!(config.check_http_auth().ok(), Some(()));
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());

    let mut closed = PRODUCTION.to_vec();
    closed.extend([
        ("STATION_TOKENS_FILE", stations_path.as_str()),
        ("ADMIN_TOKEN_FILE", admin_path.as_str()),
    ]);
    assert_eq!(ok(&closed).check_http_auth().ok(), Some(()));

    let mut stations_only = PRODUCTION.to_vec();
    stations_only.push(("STATION_TOKENS_FILE", stations_path.as_str()));
    let error = ok(&stations_only).check_http_auth().unwrap_err();
    assert_eq!(error.problems().len(), 1);
    assert_eq!(error.problems()[0].setting, "ADMIN_TOKEN_FILE");
}

#[test]
fn admin_open_and_an_admin_token_contradict() {
    let admin = secret_file(format!("{OTHER_HASH}\n").as_bytes(), 0o600);
    assert_eq!(
        err(&[("ADMIN_OPEN", "true"), ("ADMIN_TOKEN_FILE", &path(&admin))]),
        "ADMIN_OPEN: true contradicts ADMIN_TOKEN_FILE: the admin endpoints are either open or \
         behind a token; unset one of them"
    );
    assert_eq!(
        err(&[("ADMIN_OPEN", "yes")]),
        r#"ADMIN_OPEN: expected true or false, got "yes""#
    );
}

#[cfg(unix)]
#[test]
fn a_token_file_writable_by_others_draws_a_warning() {
    let file = secret_file(format!("ST-01:{TEST_HASH}\n").as_bytes(), 0o666);
    let config = ok(&[("STATION_TOKENS_FILE", &path(&file))]);
    assert!(
        config.warnings().iter().any(|w| w.starts_with(&format!(
            "STATION_TOKENS_FILE: {} is writable by group or others (mode 0666)",
            path(&file)
        ))),
        "{:?}",
        config.warnings()
    );
}
