//! How ListBackup writes a data type's records back to its platform (restore, issue 13 §5): declared per data
//! type by the platform's module, read by the restore's plan (which fields to compare and send) and by the
//! worker's writer (which calls, in which body format).

/// The writes a platform accepts for one data type. A data type without one is not writable: the catalog says
/// so (`writable: false`) and a restore naming it is refused at request time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordWrites {
    /// The path a new record is created with (`POST`), relative to the API base URL (`/customers`).
    pub create: &'static str,
    /// The path an existing record is updated with (`POST`, Stripe's convention), `{id}` standing for its
    /// id (`/customers/{id}`); `None` when the platform never lets a record change once created.
    pub update: Option<&'static str>,
    /// The fields of a backed-up record that a create sends, as they were backed up (absent or `null` ones are
    /// left out). Everything else (the id, `created`, derived fields) is the platform's to set.
    pub create_fields: &'static [&'static str],
    /// The fields an update may change; a record whose fields here equal the backup's needs no write.
    pub update_fields: &'static [&'static str],
    /// How the request body is encoded.
    pub body: WriteBody,
}

/// The encoding of a write's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteBody {
    /// `application/x-www-form-urlencoded` with nested objects and lists in brackets (`metadata[tier]=gold`,
    /// `preferred_locales[0]=en-US`), as Stripe's API reference documents it
    /// (<https://docs.stripe.com/api/metadata>); an empty value unsets a field on update.
    BracketedForm,
}

impl RecordWrites {
    /// The update path of record `id`, if the platform allows updates.
    pub fn update_path(&self, id: &str) -> Option<String> {
        self.update.map(|path| path.replace("{id}", id))
    }
}
