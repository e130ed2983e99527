//! API authentication by bearer token, until the identity capability brings
//! accounts, MFA and sessions. Tokens are 256-bit random secrets shown once;
//! only their SHA-256 is stored (a fast hash is right for high-entropy
//! secrets, unlike passwords), and lookup is by that hash.

use base64::Engine;
use caduceus_core::{Actor, Payload, Redacted, Severity, Target, Timestamp};
use caduceus_store::ApiTokenRecord;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::platform::{Platform, ServerError};

/// The only role tokens carry for now; the identity capability adds the rest.
pub const ADMIN_ROLE: &str = "admin";

const TOKEN_PREFIX: &str = "cad_";

/// A freshly issued token. The secret exists only here and in the caller's hands.
#[derive(Debug)]
pub struct IssuedToken {
    pub token_id: String,
    pub secret: Redacted<String>,
}

pub fn hash_token(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Issue an admin token labelled `label`, revoking earlier tokens with the
/// same label when `replace` is set, and record the issue on the spine.
pub async fn issue_admin_token(
    platform: &Platform,
    label: &str,
    expires: Option<Timestamp>,
    replace: bool,
) -> Result<IssuedToken, ServerError> {
    let now = platform.clock.now();
    if replace {
        platform.store.revoke_tokens_labelled(label, now).await?;
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    let token_hash = hash_token(&secret);
    let token_id = format!("tok_{}", hex::encode(token_hash.get(..6).unwrap_or_default()));
    platform
        .store
        .insert_token(&ApiTokenRecord {
            token_hash,
            token_id: token_id.clone(),
            label: label.to_owned(),
            role: ADMIN_ROLE.to_owned(),
            scopes: Vec::new(),
            owner: None,
            created: now,
            expires,
            revoked: None,
        })
        .await?;
    platform
        .record(
            Severity::Low,
            Actor::system(),
            Some(Target { kind: "api_token".into(), uid: token_id.clone() }),
            "admin api token issued",
            Payload::ApiTokenIssued { token_id: token_id.clone(), label: label.to_owned() },
        )
        .await?;
    Ok(IssuedToken { token_id, secret: Redacted::new(secret) })
}
