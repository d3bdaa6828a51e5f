use pgline_config::{Profile, TlsMode};

use crate::{PRODUCTION, load, ok, production_without};

#[test]
fn complete_production_environment_is_valid() {
    let config = ok(PRODUCTION);
    assert_eq!(config.profile, Profile::Production);
    assert_eq!(config.database.name, "plant");
    assert_eq!(config.database.tls, TlsMode::VerifyFull);
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());
}

#[test]
fn each_required_variable_is_named_when_missing() {
    for var in ["DB_HOST", "DB_NAME", "DB_USER", "DB_PASSWORD", "DB_SSL"] {
        let error = load(&production_without(var)).unwrap_err();
        let problems = error.problems();
        assert_eq!(problems.len(), 1, "{error}");
        assert_eq!(problems[0].setting, var);
        assert!(
            problems[0]
                .message
                .starts_with("required in the production profile"),
            "{error}"
        );
    }
}

#[test]
fn missing_name_message_says_how_to_fix_it() {
    let error = load(&production_without("DB_NAME")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "DB_NAME: required in the production profile: set DB_NAME to the database name, \
         or give dbname in DATABASE_URL, or database.name in the configuration file"
    );
}

#[test]
fn nothing_set_in_production_lists_all_five() {
    let error = load(&[("NODE_ENV", "production")]).unwrap_err();
    let settings: Vec<&str> = error
        .problems()
        .iter()
        .map(|p| p.setting.as_str())
        .collect();
    assert_eq!(
        settings,
        ["DB_HOST", "DB_NAME", "DB_USER", "DB_PASSWORD", "DB_SSL"]
    );
}

#[test]
fn an_empty_required_variable_counts_as_missing() {
    let mut vars = production_without("DB_PASSWORD");
    vars.push(("DB_PASSWORD", ""));
    let error = load(&vars).unwrap_err();
    assert_eq!(error.problems()[0].setting, "DB_PASSWORD");
}

#[test]
fn database_url_satisfies_the_requirements() {
    let config = ok(&[
        ("NODE_ENV", "production"),
        (
            "DATABASE_URL",
            "postgres://pgline:pw@db.plant.internal/plant?sslmode=verify-full",
        ),
    ]);
    assert_eq!(config.database.hosts[0].host, "db.plant.internal");
    assert_eq!(config.database.name, "plant");
    assert_eq!(config.database.user, "pgline");
    assert_eq!(config.database.tls, TlsMode::VerifyFull);
}

#[test]
fn database_url_may_supply_only_some_parts() {
    let mut vars = production_without("DB_NAME");
    vars.push(("DATABASE_URL", "postgres:///plant"));
    assert_eq!(ok(&vars).database.name, "plant");
}

#[test]
fn explicitly_weak_tls_in_production_is_allowed_with_a_warning() {
    let mut vars = production_without("DB_SSL");
    vars.push(("DB_SSL", "require"));
    let config = ok(&vars);
    assert_eq!(config.database.tls, TlsMode::Require);
    assert_eq!(config.warnings().len(), 1);
    assert!(!config.database.verifies_certificate());

    // libpq's rule: require with a root certificate checks the chain.
    vars.push(("DB_SSL_ROOT_CERT", "/etc/pgline/ca.pem"));
    let config = ok(&vars);
    assert!(config.database.verifies_certificate());
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());
}

#[test]
fn other_profiles_need_nothing() {
    ok(&[("NODE_ENV", "development")]);
    ok(&[("NODE_ENV", "test")]);
}
