//! Signed exports of an account's event log, verifiable offline.
//!
//! An export is NDJSON: one [`LoggedEvent`] per line in log order, then one last line, the signed summary
//! `{"summary": {…}, "signature": "<base64>"}`. The summary states the range asked for (`from`, `to`), the
//! commit horizon the export was pinned to, how many events it holds, the first and last position, and the
//! export hash: a chain over the events' own hashes,
//!
//! ```text
//! exportHash_0 = 32 zero bytes;  exportHash_i = SHA-256(exportHash_{i-1} ‖ hash of event i)
//! ```
//!
//! so it commits to every event in order (each event's hash commits to its content and to its stream's
//! history). The signature is Ed25519 (RFC 8032) over the RFC 8785 canonical JSON of the summary object, made
//! with the key configured as `LISTBACKUP_AUDIT_SIGNING_KEY`; its public half is served at
//! `GET /.well-known/listbackup-audit-key`.
//!
//! [`verify_export`] checks a file with nothing but the public key, and names the first line that does not
//! verify: an event whose hash does not match its content (modified), one that does not follow its
//! stream's previous event in the file (removed, inserted or reordered), one out of log order, and, on the
//! summary line, a count, position or export hash that differs from the file (events dropped or added at
//! the edges) or a signature that does not verify.

use std::collections::HashMap;
use std::io::BufRead;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::event::{format_recorded_at, parse_hash, ChainHash, LoggedEvent, GENESIS};
use super::log::{LogFilter, LogReader};
use crate::{LogPosition, ReadError};

/// The `format` of the summary line.
pub const EXPORT_FORMAT: &str = "listbackup-audit-export/1";

/// The key exports are signed with (Ed25519). Never generated on the fly by the service: a signature
/// only means something if the key is the operator's.
#[derive(Clone)]
pub struct AuditSigner {
    key: SigningKey,
}

impl AuditSigner {
    /// From base64 (standard alphabet, padded or not) of the 32-byte Ed25519 secret key (the seed of RFC
    /// 8032 §5.1.5).
    pub fn from_base64(secret: &str) -> Result<Self, String> {
        let bytes = decode_base64(secret.trim()).ok_or_else(|| "is not base64".to_owned())?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| format!("must be 32 bytes, not {}", b.len()))?;
        Ok(Self {
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// A fresh random key (`listbackup audit generate-key`, tests).
    pub fn generate() -> Self {
        Self {
            key: SigningKey::generate(&mut rand::rngs::OsRng),
        }
    }

    /// The secret key as `LISTBACKUP_AUDIT_SIGNING_KEY` takes it.
    pub fn secret_base64(&self) -> String {
        STANDARD.encode(self.key.to_bytes())
    }

    /// The public key, base64 of its 32 bytes: what `verify-export --public-key` takes.
    pub fn public_key_base64(&self) -> String {
        STANDARD.encode(self.key.verifying_key().to_bytes())
    }

    fn sign(&self, message: &[u8]) -> Signature {
        self.key.sign(message)
    }
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
        .ok()
}

/// Parses a public key given as base64 (or 64 hex digits) of its 32 bytes.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let text = text.trim();
    let bytes = decode_base64(text)
        .filter(|b| b.len() == 32)
        .or_else(|| hex::decode(text).ok())
        .ok_or_else(|| "is not base64 or hex of 32 bytes".to_owned())?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("must be 32 bytes, not {}", b.len()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| format!("is not an Ed25519 public key: {e}"))
}

/// The summary an export ends with (signed as its RFC 8785 canonical JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExportSummary {
    /// `listbackup-audit-export/1`.
    pub format: String,
    pub account_id: String,
    /// The range asked for on `recordedAt` (from inclusive, to exclusive); `null`: unbounded.
    pub from: Option<String>,
    pub to: Option<String>,
    /// Only events of transactions below this id (the commit horizon when the export started): what was
    /// committed later is in the next export.
    pub horizon: String,
    pub count: u64,
    pub first_position: Option<i64>,
    pub last_position: Option<i64>,
    /// The chain over the events' hashes, hex.
    pub export_hash: String,
    pub exported_at: String,
    /// The signer's public key, base64 (informative: verify with the key you trust).
    pub public_key: String,
}

/// The last line of an export.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedSummary {
    pub summary: ExportSummary,
    /// Ed25519 over the summary's RFC 8785 canonical JSON, base64.
    pub signature: String,
}

fn canonical_summary(summary: &ExportSummary) -> Vec<u8> {
    // A struct of strings and integers always canonicalizes.
    serde_json_canonicalizer::to_vec(summary).unwrap_or_default()
}

fn chain(previous: &ChainHash, event_hash: &ChainHash) -> ChainHash {
    let mut digest = Sha256::new();
    digest.update(previous);
    digest.update(event_hash);
    digest.finalize().into()
}

/// Produces an export chunk by chunk (one batch of events per chunk, then the summary), so that neither
/// the CLI nor the HTTP download ever holds more than a batch.
pub struct ExportStream {
    reader: LogReader,
    signer: AuditSigner,
    account_id: String,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    count: u64,
    first: Option<i64>,
    last: Option<i64>,
    export_hash: ChainHash,
    finished: bool,
}

impl ExportStream {
    /// Pins the export to the current commit horizon. `from`/`to` bound `recordedAt` (half-open).
    pub async fn start(
        pool: deadpool_postgres::Pool,
        signer: AuditSigner,
        account_id: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Self, ReadError> {
        let filter = LogFilter {
            account_id: account_id.to_owned(),
            from,
            to,
            ..LogFilter::default()
        };
        let reader = LogReader::start(pool, filter, LogPosition::default()).await?;
        Ok(Self {
            reader,
            signer,
            account_id: account_id.to_owned(),
            from,
            to,
            count: 0,
            first: None,
            last: None,
            export_hash: GENESIS,
            finished: false,
        })
    }

    /// The next NDJSON chunk; `None` once the summary has been produced.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, ReadError> {
        if self.finished {
            return Ok(None);
        }
        let events = self.reader.next_batch().await?;
        if events.is_empty() {
            self.finished = true;
            return Ok(Some(self.summary_line()));
        }
        let mut chunk = Vec::with_capacity(events.len() * 512);
        for event in &events {
            let hash = event.stated_hash().unwrap_or(GENESIS);
            self.export_hash = chain(&self.export_hash, &hash);
            self.count += 1;
            self.first.get_or_insert(event.position);
            self.last = Some(event.position);
            serde_json::to_writer(&mut chunk, event).map_err(|e| ReadError::BadEvent {
                event_id: event.event_id,
                event_type: event.event_type.clone(),
                source: e.into(),
            })?;
            chunk.push(b'\n');
        }
        Ok(Some(chunk))
    }

    fn summary_line(&self) -> Vec<u8> {
        let summary = ExportSummary {
            format: EXPORT_FORMAT.to_owned(),
            account_id: self.account_id.clone(),
            from: self.from.map(format_recorded_at),
            to: self.to.map(format_recorded_at),
            horizon: self.reader.horizon().to_string(),
            count: self.count,
            first_position: self.first,
            last_position: self.last,
            export_hash: hex::encode(self.export_hash),
            exported_at: format_recorded_at(Utc::now()),
            public_key: self.signer.public_key_base64(),
        };
        let signature = self.signer.sign(&canonical_summary(&summary));
        let line = SignedSummary {
            summary,
            signature: STANDARD.encode(signature.to_bytes()),
        };
        let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}

/// A verified export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedExport {
    pub summary: ExportSummary,
}

/// The first line of an export that does not verify, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ExportFailure {
    /// 1-based.
    pub line: usize,
    pub reason: String,
}

struct StreamState {
    sequence: i64,
    hash: ChainHash,
    line: usize,
}

/// Checks an export against the public key it should be signed with, reading it line by line. Needs no
/// database: this is what an auditor runs.
pub fn verify_export(
    input: impl BufRead,
    key: &VerifyingKey,
) -> Result<VerifiedExport, ExportFailure> {
    let fail = |line: usize, reason: String| ExportFailure { line, reason };
    let mut streams: HashMap<(String, String), StreamState> = HashMap::new();
    // Streams whose first event in the file is not their first ever: fine for a ranged export, a failure
    // for one from the beginning of the log (known only from the summary).
    let mut first_partial_stream: Option<(usize, String)> = None;
    let mut failure: Option<ExportFailure> = None;
    let mut previous_key: Option<(u64, i64)> = None;
    let mut export_hash = GENESIS;
    let mut count = 0u64;
    let mut first = None;
    let mut last = None;
    let mut summary: Option<(usize, SignedSummary)> = None;
    let mut last_line = 0;

    for (index, line) in input.lines().enumerate() {
        let number = index + 1;
        last_line = number;
        let line = line.map_err(|e| fail(number, format!("cannot be read: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        if let Some((summary_line, _)) = &summary {
            return Err(fail(
                number,
                format!("content after the signed summary on line {summary_line}"),
            ));
        }
        if line.starts_with("{\"summary\"") {
            let signed: SignedSummary = serde_json::from_str(&line)
                .map_err(|e| fail(number, format!("is not a signed summary: {e}")))?;
            summary = Some((number, signed));
            continue;
        }
        let event: LoggedEvent = match serde_json::from_str(&line) {
            Ok(event) => event,
            Err(e) => {
                return Err(failure
                    .unwrap_or_else(|| fail(number, format!("is not an event of an export: {e}"))))
            }
        };
        count += 1;
        first.get_or_insert(event.position);
        last = Some(event.position);
        let stated = event.stated_hash();
        export_hash = chain(&export_hash, &stated.unwrap_or(GENESIS));
        if failure.is_some() {
            continue;
        }
        let what = format!(
            "event {} ({} of {} {}, position {})",
            event.sequence,
            event.event_type,
            event.aggregate_type,
            event.aggregate_id,
            event.position
        );
        let computed = event.computed_hash().ok();
        if stated.is_none() || computed != stated {
            failure = Some(fail(
                number,
                format!("{what}: its hash does not match its content (the event was modified)"),
            ));
            continue;
        }
        let order = (event.transaction(), event.position);
        if previous_key.is_some_and(|p| p >= order) {
            failure = Some(fail(
                number,
                format!("{what}: out of log order (events were reordered)"),
            ));
            continue;
        }
        previous_key = Some(order);
        let stream = (event.aggregate_type.clone(), event.aggregate_id.clone());
        let previous_hash = parse_hash(&event.previous_hash).unwrap_or(GENESIS);
        match streams.get(&stream) {
            Some(state) => {
                if event.sequence != state.sequence + 1 || previous_hash != state.hash {
                    failure = Some(fail(
                        number,
                        format!(
                            "{what}: does not follow its stream's event {} on line {} (an event was \
                             removed, inserted or reordered)",
                            state.sequence, state.line
                        ),
                    ));
                    continue;
                }
            }
            None => {
                if (event.sequence > 1 || previous_hash != GENESIS)
                    && first_partial_stream.is_none()
                {
                    first_partial_stream = Some((
                        number,
                        format!("{what}: its stream's earlier events are missing"),
                    ));
                }
            }
        }
        streams.insert(
            stream,
            StreamState {
                sequence: event.sequence,
                hash: stated.unwrap_or(GENESIS),
                line: number,
            },
        );
    }

    let Some((summary_line, signed)) = summary else {
        return Err(failure.unwrap_or_else(|| {
            fail(
                last_line + 1,
                "the export ends without its signed summary (it was cut short)".into(),
            )
        }));
    };
    // The whole log from its start: every stream must begin at its first event.
    if signed.summary.from.is_none() {
        if let Some((line, reason)) = first_partial_stream {
            if failure.as_ref().is_none_or(|f| f.line > line) {
                failure = Some(fail(line, reason));
            }
        }
    }
    if let Some(failure) = failure {
        return Err(failure);
    }
    let s = &signed.summary;
    let signature = decode_base64(&signed.signature)
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or_else(|| {
            fail(
                summary_line,
                "the signature is not an Ed25519 signature".into(),
            )
        })?;
    key.verify(&canonical_summary(s), &signature).map_err(|_| {
        fail(
            summary_line,
            "the summary's signature does not verify with the given public key (the summary was changed, \
             or another key signed it)"
                .into(),
        )
    })?;
    if s.format != EXPORT_FORMAT {
        return Err(fail(summary_line, format!("unknown format {:?}", s.format)));
    }
    if s.count != count {
        return Err(fail(
            summary_line,
            format!(
                "the summary counts {} events but the file holds {count} (events were removed or added)",
                s.count
            ),
        ));
    }
    if s.first_position != first || s.last_position != last {
        return Err(fail(
            summary_line,
            format!(
                "the summary spans positions {:?}..{:?} but the file {first:?}..{last:?}",
                s.first_position, s.last_position
            ),
        ));
    }
    if s.export_hash != hex::encode(export_hash) {
        return Err(fail(
            summary_line,
            "the export hash does not match the events in the file (an event was changed, removed, \
             inserted or reordered)"
                .into(),
        ));
    }
    Ok(VerifiedExport {
        summary: signed.summary,
    })
}
