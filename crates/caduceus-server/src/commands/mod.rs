//! What each command of the `caduceus` binary does. The binary only parses
//! arguments and calls one function here; adding a command is one enum
//! variant there and one function here.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use caduceus_core::SystemClock;
use caduceus_core::config::Config;

use crate::platform::{Platform, ServerError};
use crate::serve::{self, Listening};
use crate::{auth, demo, telemetry};

pub mod detect;
pub mod devices;
pub mod ledger;
pub mod network;
pub mod vault;

/// `caduceus serve --config FILE`
pub async fn serve(config_path: &Path) -> Result<(), ServerError> {
    let config = crate::config::load(config_path)?;
    telemetry::init(&config.log);
    let platform = Platform::start_with_ledger(config, Arc::new(SystemClock)).await?;
    let usable = platform.store.count_usable_tokens(platform.clock.now()).await?;
    let accounts = platform.store.count_users().await?;
    let ledger = ledger_lines(&platform);
    serve::run(platform, serve::shutdown_signal(), |listening| {
        print_tls(listening);
        print_ledger(&ledger);
        if accounts == 0 {
            println!(
                "  no account exists yet: run `caduceus admin create-user --config {} --username NAME --role admin`",
                config_path.display()
            );
        }
        if usable == 0 {
            println!(
                "  no admin api token exists yet: run `caduceus admin issue-token --config {}`",
                config_path.display()
            );
        }
        println!("listening on {}", listening.url());
    })
    .await
}

/// `caduceus demo [--data-dir DIR] [--listen ADDR]`
pub async fn demo(data_dir: PathBuf, listen: String) -> Result<(), ServerError> {
    let mut config = Config::with_data_dir(data_dir);
    config.server.listen = listen;
    telemetry::init(&config.log);
    let platform = Platform::start_with_ledger(config, Arc::new(SystemClock)).await?;
    // A new admin credential every start; the previous demo one stops working.
    let token = auth::issue_admin_token(&platform, "demo-admin", None, true).await?;
    demo::seed(&platform).await?;
    demo::seed_devices(&platform).await?;
    let identity = crate::identity::service(&platform, false).await?;
    let users = demo::seed_users(&identity).await.map_err(|e| ServerError::Io(format!("demo users: {e}")))?;
    if demo::seed_records(&platform, &identity).await? {
        demo::seed_activity(&platform, &identity).await?;
    }
    let ledger = ledger_lines(&platform);
    serve::run(platform, serve::shutdown_signal(), |listening| {
        println!("Caduceus demo: {}", demo::DEMO_SITE);
        println!("  url:             {}", listening.url());
        print_tls(listening);
        print_ledger(&ledger);
        println!("  admin api token: {} (new each start; shown only here)", token.secret.expose());
        println!(
            "  try:             curl -k -H 'Authorization: Bearer {}' {}/api/v1/events",
            token.secret.expose(),
            listening.url()
        );
        println!("  api description: {}/api/openapi.json", listening.url());
        println!(
            "  patient records: {}/fhir (FHIR R4; 20 fictional patients; demo.clinician cares for",
            listening.url()
        );
        println!("                   demo-patient-0001..0010, except 0007 who refuses them by consent)");
        println!(
            "  alerts:          {}/api/v1/alerts (detection found a password spray and a nurse opening",
            listening.url()
        );
        println!("                   records she does not care for; a clinician's break-glass into a relative's");
        println!("                   record alerts 30 minutes after start; rules: /api/v1/detect/rules)");
        println!("  demo accounts (passwords new each start; admin, security-analyst and auditor enrol TOTP");
        println!("  or a passkey at first sign-in: POST /api/v1/auth/login, then /api/v1/account/totp):");
        for user in &users {
            println!("    {:<22} {}", user.username, user.password.expose());
        }
        println!("listening on {}", listening.url());
    })
    .await
}

/// `caduceus admin issue-token --config FILE --label LABEL`
pub async fn issue_token(config_path: &Path, label: &str, replace: bool) -> Result<(), ServerError> {
    let config = crate::config::load(config_path)?;
    telemetry::init(&config.log);
    let platform = Platform::start(config, Arc::new(SystemClock)).await?;
    let issued = auth::issue_admin_token(&platform, label, None, replace).await;
    platform.shutdown().await;
    let issued = issued?;
    println!("token id: {}", issued.token_id);
    println!("token:    {}", issued.secret.expose());
    println!("Store it now: it is not shown again and only its hash is kept.");
    Ok(())
}

/// `caduceus admin create-user --config FILE --username NAME --role ROLE...`:
/// create an account (the first administrator of an empty install, or any
/// account later). Without a password on stdin one is generated and
/// printed once.
pub async fn create_user(
    config_path: &Path,
    username: &str,
    display_name: &str,
    roles: &[String],
    password: Option<String>,
) -> Result<(), ServerError> {
    use caduceus_identity::roles::Role;
    use caduceus_identity::service::NewUser;
    let roles = roles
        .iter()
        .map(|r| {
            Role::parse(r).ok_or_else(|| {
                let known: Vec<&str> = Role::ALL.iter().map(|r| r.name()).collect();
                ServerError::Io(format!("`{r}` is not a role; roles are {}", known.join(", ")))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let config = crate::config::load(config_path)?;
    telemetry::init(&config.log);
    let platform = Platform::start(config, Arc::new(SystemClock)).await?;
    let result = async {
        let identity = crate::identity::service(&platform, false).await?;
        let first = platform.store.count_users().await? == 0;
        let new = NewUser {
            username: username.to_owned(),
            display_name: display_name.to_owned(),
            roles: roles.clone(),
            password: password.map(caduceus_core::Redacted::new),
            patient_ref: None,
        };
        let created = identity
            .create_user(caduceus_core::Actor::system(), new)
            .await
            .map_err(|e| ServerError::Io(e.to_string()))?;
        Ok::<_, ServerError>((created, first))
    }
    .await;
    platform.shutdown().await;
    let ((user, generated), first) = result?;
    println!("user id:  {}", user.user_id);
    println!("username: {}", user.username);
    println!("roles:    {}", user.roles.join(", "));
    if let Some(password) = generated {
        println!("password: {}", password.expose());
        println!("Store it now: it is not shown again and only its argon2id hash is kept.");
    }
    if first {
        println!("This is the first account of this installation.");
    }
    if roles.iter().any(|r| r.requires_mfa()) {
        println!("This role must enrol a second factor (TOTP or a passkey) at its first sign-in.");
    }
    Ok(())
}

/// `caduceus version`
pub fn version() -> String {
    format!("caduceus {}", caduceus_core::VERSION)
}

/// What to print about the ledger at start: its origin and verifier key
/// (and the witness key when this instance is a witness).
fn ledger_lines(platform: &Platform) -> Vec<String> {
    let Some(ledger) = &platform.ledger else { return Vec::new() };
    let mut lines = vec![
        format!("  ledger origin:   {}", ledger.checkpoints.origin()),
        format!("  ledger key:      {}", ledger.checkpoints.verifier_key()),
    ];
    if let Some(witness) = &ledger.witness {
        lines.push(format!("  witness key:     {}", witness.verifier_key()));
    }
    lines
}

fn print_ledger(lines: &[String]) {
    for line in lines {
        println!("{line}");
    }
}

fn print_tls(listening: &Listening) {
    if let Some(tls) = &listening.tls {
        let origin = if tls.generated { "generated self-signed" } else { "using" };
        println!("  tls certificate: {origin} {}", tls.cert_path.display());
        println!("  sha-256 fingerprint: {}", tls.fingerprint);
    }
}
