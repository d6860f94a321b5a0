//! Who is calling: bearer JWTs (HS256 from a shared secret, RS256/ES256 from an identity provider's JWKS),
//! turned into a [`Principal`] that every protected route takes as an extractor.

mod jwt;
mod principal;

pub use jwt::{
    mint_hs256_token, AuthConfig, Authenticator, DEFAULT_ACCOUNT_CLAIM, DEFAULT_ROLES_CLAIM,
    MIN_HS256_SECRET_BYTES,
};
pub use principal::{Principal, Role};
