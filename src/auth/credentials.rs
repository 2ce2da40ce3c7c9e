//! Passwords and API tokens.
//!
//! Passwords are hashed with argon2id (PHC string, per-user random salt). API tokens look like
//! `sst_<id>_<secret>`: the id is public and finds the row; only the SHA-256 of the secret is kept
//! and compared in constant time. A token's secret is 32 random bytes, so a fast hash is enough.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 10;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialError {
    #[error("the password must have at least {MIN_PASSWORD_CHARS} characters")]
    TooShort,
    #[error("the password must not contain the user name")]
    ContainsUsername,
    #[error("could not hash the password: {0}")]
    Hash(String),
}

/// Checks a new password against the rules; names the rule it breaks.
pub fn check_new_password(username: &str, password: &SecretString) -> Result<(), CredentialError> {
    let pw = password.expose_secret();
    if pw.chars().count() < MIN_PASSWORD_CHARS {
        return Err(CredentialError::TooShort);
    }
    if !username.is_empty() && pw.to_lowercase().contains(&username.to_lowercase()) {
        return Err(CredentialError::ContainsUsername);
    }
    Ok(())
}

/// An argon2id PHC string for `password`. Slow on purpose (tens of milliseconds): call it off the
/// async runtime.
pub fn hash_password(password: &SecretString) -> Result<String, CredentialError> {
    let mut salt = [0_u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| CredentialError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.expose_secret().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| CredentialError::Hash(e.to_string()))
}

/// Whether `password` matches the stored hash. An unreadable hash never matches.
pub fn verify_password(stored: &str, password: &SecretString) -> bool {
    match PasswordHash::new(stored) {
        Ok(hash) => Argon2::default()
            .verify_password(password.expose_secret().as_bytes(), &hash)
            .is_ok(),
        Err(_) => false,
    }
}

/// Spends the time of one verification, so that an unknown user name answers as slowly as a
/// wrong password.
pub fn verify_nothing(password: &SecretString) {
    static DUMMY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let dummy =
        DUMMY.get_or_init(|| hash_password(&SecretString::from("sunshare-timing-equaliser")).ok());
    if let Some(hash) = dummy {
        let _ = verify_password(hash, password);
    }
}

const TOKEN_PREFIX: &str = "sst_";

/// A newly made API token: show `token` once, store `id` and `secret_sha256`.
#[derive(Debug)]
pub struct NewToken {
    pub id: String,
    pub token: SecretString,
    pub secret_sha256: String,
}

pub fn new_token() -> NewToken {
    let mut id = [0_u8; 8];
    let mut secret = [0_u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut id);
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let id = hex::encode(id);
    let secret = hex::encode(secret);
    NewToken {
        token: SecretString::from(format!("{TOKEN_PREFIX}{id}_{secret}")),
        secret_sha256: secret_digest(&secret),
        id,
    }
}

/// Splits a presented token into its public id and its secret; None if it is not one of ours.
pub fn split_token(presented: &str) -> Option<(&str, &str)> {
    let rest = presented.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let well_formed = id.len() == 16
        && secret.len() == 64
        && id
            .bytes()
            .chain(secret.bytes())
            .all(|b| b.is_ascii_hexdigit());
    well_formed.then_some((id, secret))
}

fn secret_digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `secret` hashes to `stored_sha256`, compared in constant time.
pub fn secret_matches(stored_sha256: &str, secret: &str) -> bool {
    let presented = secret_digest(secret);
    bool::from(presented.as_bytes().ct_eq(stored_sha256.as_bytes()))
}

/// A random value for CSRF tokens and session-bound secrets (URL-safe hex).
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0_u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Constant-time comparison of two short strings (CSRF tokens).
pub fn same_secret(a: &str, b: &str) -> bool {
    !a.is_empty() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let pw = SecretString::from("correct horse battery");
        let hash = hash_password(&pw).expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password(&hash, &pw));
        assert!(!verify_password(
            &hash,
            &SecretString::from("correct horse battery!")
        ));
        assert!(!verify_password("not a hash", &pw));
        // Two hashes of one password differ (random salt).
        assert_ne!(hash, hash_password(&pw).expect("hash"));
    }

    #[test]
    fn password_rules_name_what_is_wrong() {
        assert_eq!(
            check_new_password("li", &SecretString::from("short")),
            Err(CredentialError::TooShort)
        );
        assert_eq!(
            check_new_password("lihua", &SecretString::from("my-LiHua-2026")),
            Err(CredentialError::ContainsUsername)
        );
        assert!(check_new_password("lihua", &SecretString::from("granary-west-17")).is_ok());
    }

    #[test]
    fn tokens_round_trip_and_reject_tampering() {
        let t = new_token();
        let text = t.token.expose_secret().to_owned();
        let (id, secret) = split_token(&text).expect("ours");
        assert_eq!(id, t.id);
        assert!(secret_matches(&t.secret_sha256, secret));
        let mut tampered = secret.to_owned();
        tampered.replace_range(0..1, if secret.starts_with('0') { "1" } else { "0" });
        assert!(!secret_matches(&t.secret_sha256, &tampered));
        assert!(split_token("Bearer xyz").is_none());
        assert!(split_token("sst_short_abc").is_none());
    }
}
