//! Authorization requests in flight, kept in Postgres (`oauth_states`) so that any API instance can take the
//! callback. The state is 32 random bytes handed to the platform; only its SHA-256 is stored, and the PKCE
//! verifier is encrypted (AES-256-GCM) under a key derived from the state, so the table alone reveals neither.
//! A state is consumed by one conditional `UPDATE`: single use across instances.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use rand::rngs::OsRng;
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::OauthError;

/// How long an authorization may take.
pub const STATE_TTL: chrono::Duration = chrono::Duration::minutes(10);

/// What a state is bound to.
#[derive(Debug, Clone)]
pub struct PendingAuthorization {
    pub account_id: String,
    pub user_id: String,
    pub platform_id: String,
    pub connection_id: Option<String>,
    pub name: Option<String>,
    pub return_url: Option<String>,
    /// The value naming the account's own authorization server (`Oauth::account_host`: Shopify's shop,
    /// Zendesk's subdomain), kept in the `shop` column, which predates Zendesk.
    pub account_host: Option<String>,
    /// The scopes the authorization asks for.
    pub scopes: Vec<String>,
}

/// A consumed state: what it was bound to and the PKCE verifier.
pub struct Consumed {
    pub pending: PendingAuthorization,
    pub verifier: Zeroizing<String>,
}

/// A fresh random state: 32 bytes, base64url.
pub fn new_state() -> Zeroizing<String> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(&mut bytes[..]);
    Zeroizing::new(URL_SAFE_NO_PAD.encode(&bytes[..]))
}

fn state_hash(state: &str) -> Vec<u8> {
    Sha256::digest(state.as_bytes()).to_vec()
}

/// The AES key that protects the verifier: derived from the state, which only the browser round trip carries.
fn verifier_cipher(state: &str) -> Aes256Gcm {
    // HKDF (RFC 5869) from the state, which only the client and the platform's redirect ever hold.
    let mut key = Zeroizing::new([0u8; 32]);
    hkdf::Hkdf::<Sha256>::new(Some(b"listbackup oauth pkce verifier"), state.as_bytes())
        .expand(b"aes-256-gcm key", &mut key[..])
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    Aes256Gcm::new_from_slice(&key[..]).expect("32 bytes is an AES-256 key")
}

pub async fn save(
    db: &deadpool_postgres::Pool,
    state: &str,
    verifier: &str,
    pending: &PendingAuthorization,
) -> Result<DateTime<Utc>, OauthError> {
    let hash = state_hash(state);
    let mut nonce = [0u8; 12];
    OsRng.fill_bytes(&mut nonce);
    let ciphertext = verifier_cipher(state)
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: verifier.as_bytes(),
                aad: &hash,
            },
        )
        // aead's error is opaque by design: there is no detail to keep.
        .map_err(|_| OauthError::corrupt("the PKCE verifier could not be encrypted"))?;
    let expires_at = Utc::now() + STATE_TTL;
    let client = db.get().await?;
    client
        .execute(
            "INSERT INTO oauth_states (state_hash, account_id, user_id, platform_id, connection_id, name, \
               return_url, shop, verifier_nonce, verifier_ciphertext, expires_at, scopes) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            &[
                &hash,
                &pending.account_id,
                &pending.user_id,
                &pending.platform_id,
                &pending.connection_id,
                &pending.name,
                &pending.return_url,
                &pending.account_host,
                &&nonce[..],
                &ciphertext,
                &expires_at,
                &pending.scopes,
            ],
        )
        .await?;
    // Expired states are of no use to anyone: drop them now and then.
    client
        .execute(
            "DELETE FROM oauth_states WHERE expires_at < now() - interval '1 day'",
            &[],
        )
        .await?;
    Ok(expires_at)
}

/// Marks the state used and returns what it was bound to; `UnknownState` when it is unknown, expired or used.
pub async fn consume(db: &deadpool_postgres::Pool, state: &str) -> Result<Consumed, OauthError> {
    if state.is_empty() || state.len() > 200 {
        return Err(OauthError::UnknownState);
    }
    let hash = state_hash(state);
    let client = db.get().await?;
    let row = client
        .query_opt(
            "UPDATE oauth_states SET used_at = now() \
             WHERE state_hash = $1 AND used_at IS NULL AND expires_at > now() \
             RETURNING account_id, user_id, platform_id, connection_id, name, return_url, shop, \
               verifier_nonce, verifier_ciphertext, scopes",
            &[&hash],
        )
        .await?
        .ok_or(OauthError::UnknownState)?;
    let nonce: Vec<u8> = row.try_get("verifier_nonce")?;
    let ciphertext: Vec<u8> = row.try_get("verifier_ciphertext")?;
    if nonce.len() != 12 {
        return Err(OauthError::UnknownState);
    }
    let plaintext = Zeroizing::new(
        verifier_cipher(state)
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &hash,
                },
            )
            .map_err(|_| OauthError::UnknownState)?,
    );
    let verifier = Zeroizing::new(
        String::from_utf8(plaintext.to_vec()).map_err(|_| OauthError::UnknownState)?,
    );
    Ok(Consumed {
        pending: PendingAuthorization {
            account_id: row.try_get("account_id")?,
            user_id: row.try_get("user_id")?,
            platform_id: row.try_get("platform_id")?,
            connection_id: row.try_get("connection_id")?,
            name: row.try_get("name")?,
            return_url: row.try_get("return_url")?,
            account_host: row.try_get("shop")?,
            scopes: row.try_get("scopes")?,
        },
        verifier,
    })
}
