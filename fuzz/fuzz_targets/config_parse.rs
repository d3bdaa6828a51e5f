//! Configuration parsing: `DATABASE_URL` (libpq URL and key=value forms),
//! the TOML file (`PGLINE_CONFIG`), the environment's values (sslmode words,
//! durations, sizes, ports), one-word settings and token-file lines.
//!
//! Beyond "no panic": a password placed in the input (as `DB_PASSWORD`,
//! `DB_MIGRATION_PASSWORD`, the password of a URL or key=value string, or
//! `database.password` in the file) never appears in the `Debug` of the
//! loaded configuration nor in the error's `Display`/`Debug`; a token hash
//! never appears in a token-file error.
//!
//! Input (so that seeds are readable): one control byte, then UTF-8 fields
//! separated by NUL: `url-a, url-b, file-a, file-b, token lines, word,
//! vars` where vars are `NAME=value` lines. The control byte's bits choose
//! how the fields are used: bits 0-1 the URL (none, raw `url-a`,
//! `postgres://{url-a}:PASSWORD@{url-b}`, `{url-a} password=PASSWORD
//! {url-b}`), bits 2-3 a password variable (none, `DB_PASSWORD`,
//! `DB_MIGRATION_PASSWORD`), bits 4-5 the file (none, raw `file-a`,
//! `{file-a}` + a `[database]` table with the password + `{file-b}`),
//! bit 6 admin token lines instead of station ones.
#![no_main]

use std::str::FromStr;

use libfuzzer_sys::fuzz_target;
use pgline_config::fuzzing::{config_from_toml, connection_string, token_lines};
use pgline_config::{Backend, LogLevel, Profile, TargetSessionAttrs, TlsMode};

/// The injected password. Inputs that contain "canary" themselves are not
/// checked for it (they could legitimately name it elsewhere).
const CANARY: &str = "Zx9canaryPw";
/// An injected token hash (64 hex digits).
const CANARY_HASH: &str = "ca0a1e5ca0a1e5ca0a1e5ca0a1e5ca0a1e5ca0a1e5ca0a1e5ca0a1e5ca0a1e5";

/// The variables fuzzed. `*_FILE` and `PGLINE_CONFIG` are left out: they
/// name files to read, and a fuzzed path such as /dev/stdin would block.
const VARS: &[&str] = &[
    "DB_HOST",
    "DB_PORT",
    "DB_NAME",
    "DB_USER",
    "DB_SSL",
    "DB_SSL_ROOT_CERT",
    "DB_TARGET_SESSION_ATTRS",
    "DB_MIGRATION_USER",
    "DB_POOL_MIN",
    "DB_POOL_MAX",
    "DB_POOL_ACQUIRE_MS",
    "DB_POOL_IDLE_MS",
    "HOST",
    "PORT",
    "DB_BACKEND",
    "HTTP_MAX_BODY_BYTES",
    "MAX_PANELS_PER_ORDER",
    "ADMIN_OPEN",
    "LOG_LEVEL",
    "RUST_LOG",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_SERVICE_NAME",
    "OTEL_SDK_DISABLED",
    "NODE_ENV",
    "APP_ENV",
];

#[derive(Debug)]
enum Url<'a> {
    None,
    /// The string as given.
    Raw(&'a str),
    /// `postgres://{user}:CANARY@{rest}`.
    Uri {
        user: &'a str,
        rest: &'a str,
    },
    /// `{before} password=CANARY {after}`.
    KeyValue {
        before: &'a str,
        after: &'a str,
    },
}

#[derive(Debug)]
enum PasswordVar {
    None,
    Main,
    Migration,
}

#[derive(Debug)]
enum File<'a> {
    None,
    Raw(&'a str),
    /// `{before}\n[database]\npassword = "CANARY"\n{after}`.
    WithPassword {
        before: &'a str,
        after: &'a str,
    },
}

#[derive(Debug)]
struct Input<'a> {
    vars: Vec<(&'static str, &'a str)>,
    url: Url<'a>,
    password_var: PasswordVar,
    file: File<'a>,
    tokens: &'a str,
    admin_tokens: bool,
    word: &'a str,
}

impl<'a> Input<'a> {
    fn decode(data: &'a [u8]) -> Option<Self> {
        let (&control, rest) = data.split_first()?;
        let text = std::str::from_utf8(rest).ok()?;
        let mut fields = text.split('\0');
        let mut next = || fields.next().unwrap_or_default();
        let (url_a, url_b, file_a, file_b, tokens, word, vars) =
            (next(), next(), next(), next(), next(), next(), next());
        let vars = vars
            .lines()
            .filter_map(|line| {
                let (name, value) = line.split_once('=')?;
                let name = VARS.iter().find(|var| **var == name)?;
                Some((*name, value))
            })
            .collect();
        Some(Self {
            vars,
            url: match control & 0b11 {
                0 => Url::None,
                1 => Url::Raw(url_a),
                2 => Url::Uri {
                    user: url_a,
                    rest: url_b,
                },
                _ => Url::KeyValue {
                    before: url_a,
                    after: url_b,
                },
            },
            password_var: match (control >> 2) & 0b11 {
                1 => PasswordVar::Main,
                2 => PasswordVar::Migration,
                _ => PasswordVar::None,
            },
            file: match (control >> 4) & 0b11 {
                0 => File::None,
                1 => File::Raw(file_a),
                _ => File::WithPassword {
                    before: file_a,
                    after: file_b,
                },
            },
            tokens,
            admin_tokens: control & 0b100_0000 != 0,
            word,
        })
    }
}

fn mentions_canary(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.contains("canary") || lower.contains("ca0a1e5")
}

fn words(word: &str) {
    fn check<T: FromStr + std::fmt::Display>(word: &str) {
        if let Ok(parsed) = word.parse::<T>() {
            assert!(
                parsed.to_string().eq_ignore_ascii_case(word.trim()),
                "{word:?} parsed as {parsed}"
            );
        }
    }
    check::<Profile>(word);
    check::<TlsMode>(word);
    check::<TargetSessionAttrs>(word);
    check::<Backend>(word);
    check::<LogLevel>(word);
}

fn tokens(text: &str, admin: bool) {
    let checked = !mentions_canary(text);
    let text = format!("{text}\nST-99:{CANARY_HASH}\n");
    match token_lines(&text, admin) {
        Ok(tokens) => assert!(!tokens.is_empty() && tokens.iter().all(|t| !t.name.is_empty())),
        Err(message) => assert!(
            !checked || !message.contains(CANARY_HASH),
            "a token-file error quotes the hash: {message}"
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::decode(data) else {
        return;
    };
    words(input.word);
    tokens(input.tokens, input.admin_tokens);

    let mut vars: Vec<(String, String)> = input
        .vars
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    // Whether every place the canary could come from is the injection.
    let mut checked = vars.iter().all(|(_, value)| !mentions_canary(value));

    let url = match input.url {
        Url::None => None,
        Url::Raw(text) => {
            checked &= !mentions_canary(text);
            Some(text.to_owned())
        }
        Url::Uri { user, rest } => {
            // A '/' or '?' in the user name moves the password into the
            // path or the query, where it is no longer a password.
            checked &=
                !mentions_canary(user) && !mentions_canary(rest) && !user.contains(['/', '?', '#']);
            Some(format!("postgres://{user}:{CANARY}@{rest}"))
        }
        Url::KeyValue { before, after } => {
            // The whole must stay in the key=value form (a `://` makes it a
            // URL, where spaces are not separators), and `before` must end
            // cleanly (no open quote, trailing backslash or key waiting for
            // its value), or it takes the password in.
            let text = format!("{before} password={CANARY} {after}");
            checked &= !mentions_canary(before)
                && !mentions_canary(after)
                && !text.contains("://")
                && (before.trim().is_empty()
                    || (connection_string(before).is_ok() && !before.trim_end().ends_with('=')));
            Some(text)
        }
    };
    if let Some(url) = &url {
        match connection_string(url) {
            Ok(entries) => {
                // libpq's URL rule: every % starts %XX with two hex digits.
                assert!(
                    !is_uri(url) || percent_escapes_valid(url),
                    "an invalid percent-escape was accepted: {url:?} -> {entries:?}"
                );
                if checked {
                    for (key, value) in &entries {
                        assert!(
                            *key == "database.password" || !value.contains(CANARY),
                            "the password ended up in {key}: {url:?} -> {entries:?}"
                        );
                    }
                }
            }
            Err(message) => assert!(
                !checked || !message.contains(CANARY),
                "a connection-string error quotes the password: {message}"
            ),
        }
        vars.push(("DATABASE_URL".to_owned(), url.clone()));
    }
    match input.password_var {
        PasswordVar::None => {}
        PasswordVar::Main => vars.push(("DB_PASSWORD".to_owned(), CANARY.to_owned())),
        PasswordVar::Migration => {
            vars.push(("DB_MIGRATION_PASSWORD".to_owned(), CANARY.to_owned()))
        }
    }
    let file = match input.file {
        File::None => None,
        File::Raw(text) => {
            checked &= !mentions_canary(text);
            Some(text.to_owned())
        }
        File::WithPassword { before, after } => {
            // `before` must parse on its own, or an open multi-line string
            // takes the password line in as text.
            checked &= !mentions_canary(before) && !mentions_canary(after) && toml_parses(before);
            Some(format!(
                "{before}\n[database]\npassword = \"{CANARY}\"\n{after}"
            ))
        }
    };

    match config_from_toml(vars, file.as_deref()) {
        Ok(config) => {
            let shown = format!("{config:?}");
            assert!(
                !checked || !shown.contains(CANARY),
                "the password is in the configuration's Debug: {shown}"
            );
            for warning in config.warnings() {
                assert!(!checked || !warning.contains(CANARY), "{warning}");
            }
            let _ = config.server.listen_address();
            let pg = config.to_tokio_postgres();
            let _ = config.migration_tokio_postgres();
            let shown = format!("{pg:?}");
            assert!(
                !checked || !shown.contains(CANARY),
                "the password is in tokio_postgres::Config's Debug: {shown}"
            );
        }
        Err(error) => {
            let shown = format!("{error} {error:?}");
            assert!(
                !checked || !shown.contains(CANARY),
                "the password is in the error: {shown}"
            );
        }
    }
});

fn is_uri(text: &str) -> bool {
    let lower = text.trim().to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

fn percent_escapes_valid(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().all(|(i, b)| {
        *b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    })
}

fn toml_parses(text: &str) -> bool {
    !matches!(
        config_from_toml(Vec::<(String, String)>::new(), Some(text)),
        Err(pgline_config::ConfigError::ParseFile { .. })
    )
}
