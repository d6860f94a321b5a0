//! How ListBackup writes a data type's records back to its platform (restore, issue 13 §5): declared per data
//! type by the platform's module, read by the restore's plan (which fields to compare and send) and by the
//! worker's writer (which calls, in which body format).
//!
//! A write strategy is named by mechanism and parameterised, as the listings are (Airbyte's declarative
//! connectors): the HTTP method of a create and of an update, the body's encoding (a bracketed form, or JSON
//! with or without an envelope such as Shopify's `{"customer": {…}}`), where the answer names the record's id,
//! where the writable fields sit in a backed-up record (HubSpot's `{id, properties: {…}}`), fields that are
//! sent under another name (Zendesk's `description` is a new ticket's first `comment.body`) and how a record
//! re-created under a new id is recognised again (its e-mail address, its handle, or all it holds).
//!
//! At most once per job: a write is either keyed by an `Idempotency-Key` the platform honours (Stripe), or
//! the plan recognises a record an earlier attempt (or an earlier restore) already created, by
//! [`RecordWrites::matched_by`], before creating it again; an update only puts fields back, so doing it twice
//! changes nothing.

/// The writes a platform accepts for one data type. A data type without one is not writable: the catalog says
/// so (`writable: false`) and a restore naming it is refused at request time.
///
/// Build one with struct update syntax from [`RecordWrites::BASE`] (Stripe's conventions: `POST` for both,
/// form-encoded, `Idempotency-Key`, the id at `/id`, fields at the top level, matched by id only) and change
/// what the platform does differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordWrites {
    /// The path a new record is created with, relative to the API base URL (`/customers`). May hold
    /// `{placeholders}` of the connection's settings as the listing paths do.
    pub create: &'static str,
    /// The path an existing record is updated with, `{id}` standing for its id (`/customers/{id}`); `None`
    /// when the platform never lets a record change once created (a Zendesk ticket is restored as a new one).
    pub update: Option<&'static str>,
    /// The fields of a backed-up record that a create sends, as they were backed up (absent or `null` ones are
    /// left out), read under [`RecordWrites::fields_at`]. Everything else (the id, `created`, derived fields)
    /// is the platform's to set.
    pub create_fields: &'static [&'static str],
    /// The fields an update may change; a record whose fields here equal the backup's needs no write (a
    /// `null` and an absent field are equal).
    pub update_fields: &'static [&'static str],
    /// How the request body is encoded.
    pub body: WriteBody,
    /// The HTTP method of a create.
    pub create_method: WriteMethod,
    /// The HTTP method of an update (Stripe `POST`, HubSpot and Keap `PATCH`, Shopify and ActiveCampaign
    /// `PUT`).
    pub update_method: WriteMethod,
    /// JSON pointer (RFC 6901) to the record's id in the answer to a write: `/id`, Shopify's
    /// `/customer/id`. A number there is read as its decimal text.
    pub new_id: &'static str,
    /// JSON pointer to the object holding the writable fields in a backed-up (and a listed) record: `""` for
    /// the record itself, HubSpot's `/properties`.
    pub fields_at: &'static str,
    /// Fields sent under another name: each moves a field's value to a path of the body (applied after the
    /// fields are chosen, so the plan compares the platform's own names).
    pub renames: &'static [FieldRename],
    /// How a snapshot record missing under its own id is recognised on the platform under another one.
    pub matched_by: MatchBy,
    /// Fields of the platform's current record (its top level) that every update carries as they are now:
    /// QuickBooks Online's `Id` and `SyncToken`, the record's version, which an update must name and which a
    /// stale one makes fail ("Stale Object Error", code 5010). Taken from the listing the restore just read.
    pub update_current: &'static [&'static str],
    /// Fields sent as `true` with every update (JSON bodies only): QuickBooks Online's `sparse`, which makes
    /// an update change the fields sent only, where a full update would clear every other writable field.
    pub update_flags: &'static [&'static str],
    /// The OAuth scopes the writes need beyond what backing the data type up needs (HubSpot's
    /// `crm.objects.contacts.write`, Shopify's `write_customers`): a restore through an OAuth connection not
    /// granted them is refused at request time, naming them. Empty where the platform's one scope covers
    /// writes (QuickBooks' `com.intuit.quickbooks.accounting`, Keap's `full`) or it has no OAuth.
    pub scopes: &'static [&'static str],
    /// Whether each write carries an `Idempotency-Key` header the platform honours (Stripe:
    /// <https://docs.stripe.com/api/idempotent_requests>). Platforms that document none get no header: the
    /// plan's [`RecordWrites::matched_by`] keeps their creates at most once per job.
    pub idempotency_key: bool,
    /// Fields a create sends that no update can change (a Stripe price's amount, currency, product and
    /// recurrence): a record present on the platform whose value here differs from the backup's cannot be
    /// restored in place, and is reported so rather than duplicated.
    pub immutable_fields: &'static [&'static str],
    /// Fields holding the id of a record of another data type of the same platform (a price's `product`).
    /// When that record was created again under a new id (by this restore or an earlier one), the write sends
    /// the new id; the restore orders data types so that the referred ones come first
    /// ([`restore_order`]).
    pub references: &'static [Reference],
    /// Placeholders of [`RecordWrites::create`] and [`RecordWrites::update`] filled from the record written
    /// rather than from the connection: a child record's parent (a Mailchimp member's `{list_id}`, its own
    /// field), or a value derived from one of its fields (its `{subscriber_hash}`, the MD5 of its lower-case
    /// e-mail address). A create takes them from the backed-up record, an update from the platform's record
    /// as listed now. A record lacking one cannot be written and is reported so.
    pub record_params: &'static [RecordParam],
    /// A platform record whose field holds one of these values is not there any more although the listing
    /// still shows it (a Mailchimp member with status `archived`): the plan treats it as missing (and a
    /// backed-up record in that state as nothing to restore).
    pub removed_when: &'static [FieldIs],
    /// Fields the plan compares but a restore never writes back: a record that differs from the snapshot in
    /// these only is skipped, saying so (a Mailchimp member's `status`: whether someone wants mail is theirs
    /// to say, not a backup's).
    pub kept_fields: &'static [&'static str],
    /// Set-valued fields the create and the update do not carry, each put back by a follow-up write of its
    /// own once the record's write has succeeded (a Mailchimp member's `tags`, set through `POST
    /// …/members/{subscriber_hash}/tags`). The plan compares each as a set of names: a record present on the
    /// platform whose set differs from the snapshot's is an update (in mode `overwrite`) even when its other
    /// fields do not.
    pub set_fields: &'static [SetField],
}

/// A set-valued field of a record written by a follow-up call of its own ([`RecordWrites::set_fields`]),
/// the mechanism of Mailchimp's member tags ("Add or remove member tags",
/// <https://mailchimp.com/developer/marketing/api/list-member-tags/add-or-remove-member-tags/>).
///
/// The set is an array under the record's writable fields ([`RecordWrites::fields_at`]) whose elements are
/// objects named by [`SetField::name`] (a Mailchimp tag `{id, name}`) or plain names; elements are compared
/// and sent by name only, since an element's id is the platform's (a tag re-created gets a new one). A `null`
/// or absent set is an empty one.
///
/// - After a **create**, the follow-up sets every element of the snapshot's set (none: no follow-up); where
///   the platform still lists the record in a removed state (an archived Mailchimp member, brought back by
///   the create's upsert), the elements it holds that the snapshot lacks are unset too.
/// - After an **update** (or instead of one, when only the set differs), it sets every element of the
///   snapshot's set and unsets each element of the platform's set that the snapshot lacks, so the set ends
///   as the snapshot's.
///
/// The follow-up's path takes the placeholders the create's and the update's take: `{id}` (the record's id
/// on the platform, a created record's new one) and [`RecordWrites::record_params`], filled from the record
/// the create or the update was made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetField {
    /// The field's name among the record's writable fields (`tags`).
    pub field: &'static str,
    /// JSON pointer (RFC 6901) inside an element to its name (`/name`); an element that is text is its name.
    pub name: &'static str,
    /// The follow-up's path relative to the API base URL
    /// (`/lists/{list_id}/members/{subscriber_hash}/tags`).
    pub path: &'static str,
    /// The follow-up's HTTP method.
    pub method: WriteMethod,
    /// What the follow-up's JSON body says.
    pub body: SetBody,
}

/// The JSON body of a [`SetField`]'s follow-up write: how it says which elements to set and which to unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetBody {
    /// Each element named with a status, elements not named left as they are: `{"<list>": [{"<name>":
    /// "<element>", "<status>": "<active>"}, …, {"<name>": "<element>", "<status>": "<inactive>"}, …]}`, the
    /// ones to set first, with each of `flags` set to `true` beside the list. Mailchimp's member tags:
    /// `{"tags": [{"name": "VIP", "status": "active"}], "is_syncing": true}`, a tag name the audience does
    /// not have yet created when active.
    Statuses {
        list: &'static str,
        name: &'static str,
        status: &'static str,
        active: &'static str,
        inactive: &'static str,
        flags: &'static [&'static str],
    },
}

/// What a [`SetField`]'s follow-up write changes: the names it sets and the names it unsets, each sorted.
/// A name is never unset that differs only in case from one set (a platform that matches names without
/// case, as Mailchimp's tag names are in its app, would otherwise remove what it has just set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetChange {
    pub set: SetField,
    pub active: Vec<String>,
    pub inactive: Vec<String>,
}

impl SetField {
    /// The names of the set's elements in `fields` (a record's writable fields), sorted, without repeats;
    /// empty for a `null` or absent set. Elements without a name are left out.
    pub fn names(&self, fields: &serde_json::Map<String, serde_json::Value>) -> Vec<String> {
        let mut names: Vec<String> = fields
            .get(self.field)
            .and_then(serde_json::Value::as_array)
            .map(|elements| {
                elements
                    .iter()
                    .filter_map(|element| match element {
                        serde_json::Value::String(name) => Some(name.clone()),
                        element => element
                            .pointer(self.name)
                            .and_then(serde_json::Value::as_str)
                            .map(str::to_owned),
                    })
                    .filter(|name| !name.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names.dedup();
        names
    }
}

impl SetChange {
    /// The follow-up's JSON body ([`SetBody`]).
    pub fn body(&self) -> serde_json::Value {
        match self.set.body {
            SetBody::Statuses {
                list,
                name,
                status,
                active,
                inactive,
                flags,
            } => {
                let element =
                    |element: &String, to: &str| serde_json::json!({ name: element, status: to });
                let elements: Vec<serde_json::Value> = self
                    .active
                    .iter()
                    .map(|e| element(e, active))
                    .chain(self.inactive.iter().map(|e| element(e, inactive)))
                    .collect();
                let mut body = serde_json::Map::new();
                body.insert(list.to_owned(), serde_json::Value::Array(elements));
                for flag in flags {
                    body.insert((*flag).to_owned(), serde_json::Value::Bool(true));
                }
                serde_json::Value::Object(body)
            }
        }
    }
}

/// A path placeholder filled from the record written ([`RecordWrites::record_params`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordParam {
    /// The placeholder's name, written `{name}` in the path.
    pub placeholder: &'static str,
    /// JSON pointer (RFC 6901) to the record's field holding the value (text or a number).
    pub field: &'static str,
    /// How the value goes into the path (percent-encoded as a path segment either way).
    pub value: ParamValue,
}

/// How a [`RecordParam`]'s field becomes the placeholder's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamValue {
    /// The field's text as it is.
    AsIs,
    /// The lower-case hex MD5 of the field's text trimmed and in lower case: Mailchimp's subscriber hash
    /// ("The MD5 hash of the lowercase version of the list member's email address",
    /// <https://mailchimp.com/developer/marketing/api/list-members/add-or-update-list-member/>).
    Md5OfLowercase,
}

/// A field holding a value: `field` a JSON pointer, `value` the text it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldIs {
    pub field: &'static str,
    pub value: &'static str,
}

/// A write's path could not be made from its record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the record has no {field} for the path's {{{placeholder}}}")]
pub struct MissingParam {
    pub placeholder: &'static str,
    pub field: &'static str,
}

/// A field of a record that names a record of another data type (`prices.product` → `products`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reference {
    /// A top-level field of the record holding the other record's id as text.
    pub field: &'static str,
    /// The data type of the record it names.
    pub data_type: &'static str,
}

/// `data_types` in the order a restore writes them: each after the data types its records refer to (see
/// [`RecordWrites::references`]), otherwise as given. References between data types are declared acyclic; a
/// data type not in `writes_of` keeps its place among those without references.
pub fn restore_order(
    data_types: &[String],
    writes_of: impl Fn(&str) -> Option<RecordWrites>,
) -> Vec<&String> {
    // Depth: 0 for a data type referring to none, else one more than the deepest it refers to.
    fn depth(
        data_type: &str,
        writes_of: &dyn Fn(&str) -> Option<RecordWrites>,
        guard: usize,
    ) -> usize {
        match writes_of(data_type) {
            Some(writes) if guard > 0 => writes
                .references
                .iter()
                .map(|r| 1 + depth(r.data_type, writes_of, guard - 1))
                .max()
                .unwrap_or(0),
            _ => 0,
        }
    }
    let mut ordered: Vec<(usize, usize, &String)> = data_types
        .iter()
        .enumerate()
        .map(|(at, d)| (depth(d, &writes_of, 8), at, d))
        .collect();
    ordered.sort();
    ordered.into_iter().map(|(_, _, d)| d).collect()
}

/// An HTTP method a write is sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMethod {
    Post,
    Put,
    Patch,
}

impl WriteMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
        }
    }
}

/// The encoding of a write's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteBody {
    /// `application/x-www-form-urlencoded` with nested objects and lists in brackets (`metadata[tier]=gold`,
    /// `preferred_locales[0]=en-US`), as Stripe's API reference documents it
    /// (<https://docs.stripe.com/api/metadata>); an empty value unsets a field on update.
    BracketedForm,
    /// `application/json`: the fields as an object, inside `{"<envelope>": {…}}` when the platform wants
    /// one (HubSpot `properties`, Shopify `customer`/`product`, ActiveCampaign `contact`, Zendesk
    /// `ticket`). `unset` is how an update clears a field.
    Json {
        envelope: Option<&'static str>,
        unset: Unset,
    },
}

/// How an update clears a field the backup did not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unset {
    /// JSON `null` (Shopify, Keap, ActiveCampaign).
    Null,
    /// An empty string: HubSpot clears a property set to `""` ("To clear a property value, set it to an
    /// empty string", CRM objects guide).
    EmptyString,
}

/// A field sent at another path of the body: Zendesk's backed-up `description` is a new ticket's
/// `comment.body` (a ticket's description is its first comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldRename {
    pub field: &'static str,
    /// The keys leading to it in the body (inside the envelope), e.g. `["comment", "body"]`.
    pub to: &'static [&'static str],
}

/// How a record of the snapshot that is missing under its id is found again on the platform, created by an
/// earlier attempt of the same job, an earlier restore or by hand under a new id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchBy {
    /// By its id only (Stripe, whose `Idempotency-Key` keeps a job's creates single).
    Id,
    /// By a natural key the platform keeps unique, a JSON pointer into the record (an e-mail address,
    /// compared without case; Shopify's product `handle`).
    Key(&'static str),
    /// By everything a create sends: a platform record (not itself in the snapshot) whose create fields all
    /// equal the backed-up record's is that record re-created (HubSpot deals, Zendesk tickets).
    Content,
}

impl RecordWrites {
    /// Stripe's conventions, the base of every declaration: `POST` creates and updates a form-encoded body
    /// with an `Idempotency-Key`, the answer's `/id` is the record's, the fields are the record's own.
    pub const BASE: RecordWrites = RecordWrites {
        create: "",
        update: None,
        create_fields: &[],
        update_fields: &[],
        body: WriteBody::BracketedForm,
        create_method: WriteMethod::Post,
        update_method: WriteMethod::Post,
        new_id: "/id",
        fields_at: "",
        renames: &[],
        matched_by: MatchBy::Id,
        update_current: &[],
        update_flags: &[],
        scopes: &[],
        idempotency_key: true,
        immutable_fields: &[],
        references: &[],
        record_params: &[],
        removed_when: &[],
        kept_fields: &[],
        set_fields: &[],
    };

    /// The update path of record `id`, if the platform allows updates (without [`RecordWrites::record_params`]:
    /// see [`RecordWrites::path`]).
    pub fn update_path(&self, id: &str) -> Option<String> {
        self.update.map(|path| path.replace("{id}", id))
    }

    /// `template` (the create or the update path) with `{id}` as `id` and each of
    /// [`RecordWrites::record_params`] taken from `record`, every value percent-encoded as a path segment.
    pub fn path(
        &self,
        template: &str,
        id: Option<&str>,
        record: &serde_json::Value,
    ) -> Result<String, MissingParam> {
        let mut path = template.to_owned();
        if let Some(id) = id {
            path = path.replace("{id}", &segment(id));
        }
        for param in self.record_params {
            let needle = format!("{{{}}}", param.placeholder);
            if !path.contains(&needle) {
                continue;
            }
            let missing = MissingParam {
                placeholder: param.placeholder,
                field: param.field,
            };
            let text = record
                .pointer(param.field)
                .and_then(super::listing::scalar_text)
                .filter(|t| !t.trim().is_empty())
                .ok_or(missing)?;
            let value = match param.value {
                ParamValue::AsIs => text.into_owned(),
                ParamValue::Md5OfLowercase => subscriber_hash(&text),
            };
            path = path.replace(&needle, &segment(&value));
        }
        Ok(path)
    }

    /// Whether the platform's `record` counts as removed although listed ([`RecordWrites::removed_when`]).
    pub fn is_removed(&self, record: &serde_json::Value) -> bool {
        self.removed_when.iter().any(|is| {
            record
                .pointer(is.field)
                .and_then(serde_json::Value::as_str)
                .is_some_and(|v| v == is.value)
        })
    }

    /// The object of a record that holds its writable fields ([`RecordWrites::fields_at`]); `None` when the
    /// record has no object there.
    pub fn fields_of<'a>(
        &self,
        record: &'a serde_json::Value,
    ) -> Option<&'a serde_json::Map<String, serde_json::Value>> {
        record.pointer(self.fields_at)?.as_object()
    }

    /// What recognises `record` again under another id ([`RecordWrites::matched_by`]): a key text, `None`
    /// when matched by id only or when the record lacks the key.
    pub fn match_key(&self, record: &serde_json::Value) -> Option<String> {
        match self.matched_by {
            MatchBy::Id => None,
            MatchBy::Key(pointer) => {
                let text = super::listing::scalar_text(record.pointer(pointer)?)?;
                let text = text.trim().to_lowercase();
                (!text.is_empty()).then_some(text)
            }
            MatchBy::Content => {
                let fields = self.fields_of(record)?;
                let values: Vec<&serde_json::Value> = self
                    .create_fields
                    .iter()
                    .map(|f| fields.get(*f).unwrap_or(&serde_json::Value::Null))
                    .collect();
                if values.iter().all(|v| v.is_null()) {
                    return None;
                }
                serde_json::to_string(&values).ok()
            }
        }
    }
}

/// The lower-case hex MD5 of `text` trimmed and in lower case (Mailchimp's subscriber hash, see
/// [`ParamValue::Md5OfLowercase`]).
pub fn subscriber_hash(text: &str) -> String {
    use md5::{Digest, Md5};
    let digest = Md5::digest(text.trim().to_lowercase().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// `value` percent-encoded as one path segment (RFC 3986 unreserved characters as they are).
fn segment(value: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(value, SEGMENT).to_string()
}

/// How a restore puts a file platform's files back (Google Drive, Dropbox, Box): the second write strategy
/// beside [`RecordWrites`], named by mechanism. A restore never overwrites or deletes anything on the
/// platform: it creates one **new folder** (`ListBackup restore <snapshot time> <job>`) under
/// [`FileWrites::root`], re-creates beneath it the folders the backed-up files were in (as far as each
/// file's record says, [`Placement`]), and uploads each file's bytes from the backup into its folder. The
/// report maps each backed-up file's id to the id of its uploaded copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileWrites {
    /// Where every restore folder is created: Dropbox's root (the path `""`), Box's "All Files" (`0`),
    /// Drive's "My Drive" (the alias `root`).
    pub root: &'static str,
    /// The request that creates one folder.
    pub create_folder: FolderRequest,
    /// The request that uploads one file.
    pub upload: UploadRequest,
    /// Where a backed-up file's record says which folder it was in.
    pub placement: Placement,
    /// JSON pointer to a record's name (`/name` on all three).
    pub name: &'static str,
    /// The records of the data type that are folders (re-created as their files need them; reported as
    /// skipped).
    pub folder: &'static [super::Condition],
    /// The OAuth scopes the writes need beyond a backup's (Drive `drive.file`, Dropbox
    /// `files.content.write`, Box `root_readwrite`): a restore through an OAuth connection not granted them
    /// is refused at request time.
    pub scopes: &'static [&'static str],
}

/// A JSON request that creates a folder. Its body is a JSON template whose string values have `{name}` and
/// `{parent}` replaced (JSON-escaped) by the folder's name and its parent's reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FolderRequest {
    pub host: super::ContentHost,
    /// Relative to the host's base URL (`/2/files/create_folder_v2`, `/folders`).
    pub path: &'static str,
    pub query: &'static [(&'static str, &'static str)],
    /// The JSON body template (`{"name":"{name}","parent":{"id":"{parent}"}}`).
    pub body: &'static str,
    /// JSON pointer to what names the new folder as the parent of what goes in it: its id (`/id`), or on
    /// Dropbox, which addresses by path, its path (`/metadata/path_display`).
    pub new_ref: &'static str,
}

/// The request that uploads one file's bytes with its metadata: a JSON template whose string values have
/// `{name}`, `{parent}` and `{mimeType}` replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadRequest {
    pub host: super::ContentHost,
    pub path: &'static str,
    pub query: &'static [(&'static str, &'static str)],
    pub body: UploadBody,
    /// The metadata template.
    pub metadata: &'static str,
    /// JSON pointer to the uploaded file's id in the answer (`/id`, Box's `/entries/0/id`).
    pub new_id: &'static str,
    /// The most bytes the platform documents for one such request (Dropbox 150 MB, Box 50 MB, Drive's
    /// multipart upload 5 MB); a bigger file goes through [`UploadRequest::large`], or, without one, is
    /// reported `cannot_restore` naming the limit.
    pub max_bytes: u64,
    /// How a file over `max_bytes` is uploaded, if ListBackup can.
    pub large: Option<LargeUpload>,
    /// How an upload whose answer was lost is recognised on the platform, if it can be: without it, a single
    /// request is sent again (a platform that renames may keep a second copy), and a session whose finish
    /// was applied before its answer was lost fails.
    pub lost_answer: Option<UploadLookup>,
}

/// Looking up what an upload left at its path, when its answer was lost after the platform may have taken
/// it (Dropbox's `files/get_metadata`,
/// <https://www.dropbox.com/developers/documentation/http/documentation#files-get_metadata>): the file found
/// there is the upload's when its size and content hash are those of the bytes sent; nothing there (or
/// another file) means it was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadLookup {
    /// A JSON `POST` of `body` to `path` on `host`, answered JSON: the file's metadata.
    pub host: super::ContentHost,
    pub path: &'static str,
    /// A JSON template like the upload's `metadata` (`{name}`, `{parent}`), naming the path the upload
    /// commits to (`{"path":"{parent}/{name}"}`).
    pub body: &'static str,
    /// The lookup's answer when nothing is at the path (Dropbox: 409 `path/not_found/`).
    pub not_found: super::ErrorMatch,
    /// What the answer meets when it is a file (Dropbox: `.tag` is `file`; a folder is not the upload).
    pub kind: super::Condition,
    /// JSON pointers into the answer: its size in bytes (an integer), its content hash (text, compared
    /// without case) and its id.
    pub size: &'static str,
    pub hash: &'static str,
    pub new_id: &'static str,
    /// How the platform computes the content hash of a file's bytes.
    pub hash_kind: ContentHash,
}

/// A platform's hash of a file's bytes, as it documents it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentHash {
    /// Lower-case hex SHA-256 of the concatenated SHA-256 digests of each `block_bytes` block of the file
    /// (the last block may be shorter; no block for an empty file): Dropbox's `content_hash` with 4 MiB
    /// blocks (<https://www.dropbox.com/developers/reference/content-hash>).
    Sha256OfBlocks { block_bytes: u64 },
}

/// How an upload's request carries the bytes and the metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadBody {
    /// The bytes are the body (`application/octet-stream`), the metadata is JSON in this header, non-ASCII
    /// escaped (Dropbox's `Dropbox-API-Arg`,
    /// <https://www.dropbox.com/developers/documentation/http/documentation#formats>).
    ArgHeader(&'static str),
    /// `multipart/form-data`: the metadata as the form field `metadata`, then the bytes as the file field
    /// `file` (Box: "the `attributes` part of the body must come before the `file` part",
    /// <https://developer.box.com/reference/post-files-content/>).
    FormData {
        metadata: &'static str,
        file: &'static str,
    },
    /// `multipart/related`: the metadata part (`application/json; charset=UTF-8`), then the media part
    /// (Drive's `uploadType=multipart`,
    /// <https://developers.google.com/drive/api/guides/manage-uploads#multipart>).
    Related,
}

/// How a file over the single-request limit is uploaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LargeUpload {
    /// Drive's resumable upload (<https://developers.google.com/drive/api/guides/manage-uploads#resumable>):
    /// `POST` the metadata to `path?uploadType=resumable` with `X-Upload-Content-Type` and
    /// `X-Upload-Content-Length`; the answer's `Location` is the session URI; one `PUT` of every byte there
    /// answers the file.
    Resumable {
        path: &'static str,
        query: &'static [(&'static str, &'static str)],
    },
    /// An upload session fed in chunks, its arguments as JSON in the upload's argument header
    /// ([`UploadBody::ArgHeader`]), Dropbox's (<https://www.dropbox.com/developers/documentation/http/documentation#files-upload_session-start>):
    /// `start` with the first chunk and `{"close": false}` answers `{"session_id"}`; `append` takes each
    /// next chunk with `{"cursor": {"session_id", "offset"}, "close": false}`; `finish` takes
    /// `{"cursor": {…, "offset": <every byte>}, "commit": <the upload's metadata>}` and an empty body, and
    /// answers the file. A chunk is held in memory while it is sent (and sent again on a retry): memory is
    /// one chunk, whatever the file's size.
    ///
    /// A request sent again after its answer was lost, although the platform had applied it, is answered
    /// `wrong_offset` (Dropbox: 409 `lookup_failed/incorrect_offset/`,
    /// <https://www.dropbox.com/developers/documentation/http/documentation#files-upload_session-append>),
    /// which names the bytes the session holds at `correct_offset`: the end of the chunk sent means it was
    /// applied; a smaller offset, that the session continues from there.
    Session {
        start: &'static str,
        append: &'static str,
        finish: &'static str,
        /// Bytes per request: at most the upload's `max_bytes` (Dropbox asks for multiples of 4 MiB).
        chunk_bytes: u64,
        wrong_offset: super::ErrorMatch,
        /// A JSON pointer into the `wrong_offset` answer: the bytes the session holds (an integer).
        correct_offset: &'static str,
        /// The answer to a `finish` whose session is no longer open (Dropbox: 409 `lookup_failed/closed/`
        /// or `lookup_failed/not_found/`,
        /// <https://www.dropbox.com/developers/documentation/http/documentation#files-upload_session-finish>):
        /// a `finish` sent again after its answer was lost, the file committed. The upload's
        /// [`UploadRequest::lost_answer`] looks for it; without one, or when the file there is not the one
        /// sent, the upload fails.
        closed: super::ErrorMatch,
    },
    /// Box's chunked upload session (<https://developer.box.com/guides/uploads/chunked/>), on the upload's
    /// host:
    /// - `POST create` with `session` filled (`{name}`, `{parent}`) plus `"file_size": <bytes>` answers
    ///   201 `{"id", "part_size", "total_parts", "session_endpoints"}`
    ///   (<https://developer.box.com/reference/post-files-upload-sessions/>);
    /// - each part `PUT part` (`{id}` the session's) with `Content-Range: bytes <first>-<last>/<size>` and
    ///   `Digest: sha=<base64 SHA-1 of the part>`, every part exactly `part_size` bytes but the last, answers
    ///   `{"part": {"part_id", "offset", "size", "sha1"}}`; 409 a range that overlaps another part, 412 a
    ///   digest that does not match, 416 a range that is not the session's
    ///   (<https://developer.box.com/reference/put-files-upload-sessions-id/>);
    /// - `POST commit` with `Digest: sha=<base64 SHA-1 of the whole file>` and `{"parts": [<each part as
    ///   answered>]}` answers 201 with the file like a direct upload, or 202 with `Retry-After` while parts
    ///   are still being processed (asked again after it)
    ///   (<https://developer.box.com/reference/post-files-upload-sessions-id-commit/>).
    ///
    /// Parts are read from the stored file one at a time and held while sent (and sent again on a retry):
    /// memory is one part, whatever the file's size.
    Parts {
        create: &'static str,
        /// The session's arguments besides `file_size`, a template like the upload's `metadata`.
        session: &'static str,
        part: &'static str,
        commit: &'static str,
    },
}

/// Where a backed-up file's record says which folder it was in, as folder names from the top.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// A display path (Dropbox's `path_display`, `/A/B/file.txt`): the folders are its segments but the last.
    Path(&'static str),
    /// The record lists its ancestors from the top, each an object with a `name` (Box's
    /// `path_collection.entries`); the entry whose `id` is `skip_id` is the root itself ("All Files", `0`).
    Ancestors {
        entries: &'static str,
        skip_id: &'static str,
    },
    /// The record names its parent folder's id (Drive's `parents`, a list of one); folders are records of
    /// the same data type, named and placed the same way. A parent the backup does not hold (the root of
    /// "My Drive") is the top.
    Parents(&'static str),
}

impl FileWrites {
    /// The names of the folders `record` was in, from the top, given every record of the data type by id
    /// (for [`Placement::Parents`]). Empty: at the top (or the record does not say).
    pub fn folders_of(
        &self,
        record: &serde_json::Value,
        by_id: &std::collections::HashMap<String, serde_json::Value>,
    ) -> Vec<String> {
        match self.placement {
            Placement::Path(pointer) => {
                let Some(path) = record.pointer(pointer).and_then(|v| v.as_str()) else {
                    return Vec::new();
                };
                let mut segments: Vec<String> = path
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                segments.pop();
                segments
            }
            Placement::Ancestors { entries, skip_id } => record
                .pointer(entries)
                .and_then(|v| v.as_array())
                .map(|entries| {
                    entries
                        .iter()
                        .filter(|e| {
                            e.get("id").and_then(super::listing::scalar_text).as_deref()
                                != Some(skip_id)
                        })
                        .filter_map(|e| e.pointer(self.name)?.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            Placement::Parents(pointer) => {
                let parent_of = |r: &serde_json::Value| {
                    r.pointer(pointer)
                        .and_then(|v| v.as_array())
                        .and_then(|parents| parents.first())
                        .and_then(|p| p.as_str())
                        .map(str::to_owned)
                };
                let mut names = Vec::new();
                let mut seen = std::collections::HashSet::new();
                let mut at = parent_of(record);
                while let Some(id) = at {
                    // A loop (never from a real Drive) ends the walk.
                    if !seen.insert(id.clone()) {
                        break;
                    }
                    let Some(folder) = by_id.get(&id) else { break };
                    let Some(name) = folder.pointer(self.name).and_then(|v| v.as_str()) else {
                        break;
                    };
                    names.push(name.to_owned());
                    at = parent_of(folder);
                }
                names.reverse();
                names
            }
        }
    }

    /// Whether `record` is a folder of the data type.
    pub fn is_folder(&self, record: &serde_json::Value) -> bool {
        !self.folder.is_empty() && super::Condition::all_hold(self.folder, record)
    }
}

/// The file name extension of an export format (a Google Doc exported as `.docx`): a restored export is
/// uploaded under its name with this extension, as the Office (or PDF, JSON) file it is.
pub fn export_extension(mime_type: &str) -> Option<&'static str> {
    Some(match mime_type {
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => "docx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => "xlsx",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation" => "pptx",
        "application/pdf" => "pdf",
        "application/vnd.google-apps.script+json" => "json",
        _ => return None,
    })
}

/// A JSON template (a declaration's constant) with every `{key}` in its string values replaced by `values`'
/// value, as JSON text escapes it. `Err` when the template is not JSON (a declaration's mistake; the catalog
/// test parses every template).
pub fn fill_template(
    template: &str,
    values: &[(&str, &str)],
) -> Result<serde_json::Value, serde_json::Error> {
    fn fill(value: &mut serde_json::Value, values: &[(&str, &str)]) {
        match value {
            serde_json::Value::String(text) => {
                for (key, with) in values {
                    let placeholder = format!("{{{key}}}");
                    if text.contains(&placeholder) {
                        *text = text.replace(&placeholder, with);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| fill(v, values)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|v| fill(v, values)),
            _ => {}
        }
    }
    let mut value: serde_json::Value = serde_json::from_str(template)?;
    fill(&mut value, values);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_path_takes_its_parent_and_a_hash_from_the_record() {
        let members = RecordWrites {
            create: "/lists/{list_id}/members/{subscriber_hash}?skip_merge_validation=true",
            update: Some("/lists/{list_id}/members/{id}"),
            record_params: &[
                RecordParam {
                    placeholder: "list_id",
                    field: "/list_id",
                    value: ParamValue::AsIs,
                },
                RecordParam {
                    placeholder: "subscriber_hash",
                    field: "/email_address",
                    value: ParamValue::Md5OfLowercase,
                },
            ],
            ..RecordWrites::BASE
        };
        let member = json!({"id": "x", "list_id": "a1b2 c3", "email_address": " Urist.McVankab@freddiesjokes.com"});
        // Mailchimp's own example: the hash of urist.mcvankab@freddiesjokes.com.
        assert_eq!(
            members.path(members.create, None, &member).unwrap(),
            "/lists/a1b2%20c3/members/62eeb292278cc15f5817cb78f7790b08?skip_merge_validation=true"
        );
        assert_eq!(
            members
                .path(members.update.unwrap(), Some("ab/c"), &member)
                .unwrap(),
            "/lists/a1b2%20c3/members/ab%2Fc"
        );
        let err = members
            .path(members.create, None, &json!({"list_id": "l"}))
            .unwrap_err();
        assert_eq!(err.placeholder, "subscriber_hash");
        assert!(err.to_string().contains("/email_address"), "{err}");
    }

    #[test]
    fn a_record_in_a_removed_state_counts_as_removed() {
        let writes = RecordWrites {
            removed_when: &[FieldIs {
                field: "/status",
                value: "archived",
            }],
            ..RecordWrites::BASE
        };
        assert!(writes.is_removed(&json!({"status": "archived"})));
        assert!(!writes.is_removed(&json!({"status": "unsubscribed"})));
        assert!(!writes.is_removed(&json!({})));
    }

    #[test]
    fn a_record_is_matched_by_its_key_without_case_or_by_all_it_holds() {
        let by_email = RecordWrites {
            fields_at: "/properties",
            matched_by: MatchBy::Key("/properties/email"),
            ..RecordWrites::BASE
        };
        let record =
            json!({"id": "1", "properties": {"email": " Ada@Example.test", "firstname": "Ada"}});
        assert_eq!(
            by_email.match_key(&record).as_deref(),
            Some("ada@example.test")
        );
        assert_eq!(by_email.match_key(&json!({"id": "2"})), None);
        let by_content = RecordWrites {
            create_fields: &["dealname", "amount"],
            matched_by: MatchBy::Content,
            ..by_email
        };
        let deal =
            |amount: &str| json!({"id": "9", "properties": {"dealname": "D", "amount": amount}});
        assert_eq!(
            by_content.match_key(&deal("10")),
            by_content.match_key(
                &json!({"id": "10", "properties": {"dealname": "D", "amount": "10",
                                                                   "hs_object_id": "10"}})
            )
        );
        assert_ne!(
            by_content.match_key(&deal("10")),
            by_content.match_key(&deal("11"))
        );
        assert_eq!(RecordWrites::BASE.match_key(&record), None);
    }

    #[test]
    fn referred_data_types_are_restored_first_and_the_rest_keep_their_order() {
        const PRODUCTS: RecordWrites = RecordWrites {
            create: "/products",
            ..RecordWrites::BASE
        };
        const PRICES: RecordWrites = RecordWrites {
            references: &[Reference {
                field: "product",
                data_type: "products",
            }],
            ..PRODUCTS
        };
        let asked: Vec<String> = ["prices", "customers", "products", "coupons"]
            .map(String::from)
            .to_vec();
        let order = restore_order(&asked, |d| match d {
            "prices" => Some(PRICES),
            "products" | "customers" | "coupons" => Some(PRODUCTS),
            _ => None,
        });
        assert_eq!(order, ["customers", "products", "coupons", "prices"]);
    }

    #[test]
    fn a_files_folders_come_from_its_path_its_ancestors_or_its_parents() {
        use std::collections::HashMap;
        const BASE: FileWrites = FileWrites {
            root: "",
            create_folder: FolderRequest {
                host: crate::platform::ContentHost::Api,
                path: "/f",
                query: &[],
                body: "{}",
                new_ref: "/id",
            },
            upload: UploadRequest {
                host: crate::platform::ContentHost::Api,
                path: "/u",
                query: &[],
                body: UploadBody::Related,
                metadata: "{}",
                new_id: "/id",
                max_bytes: 1,
                large: None,
                lost_answer: None,
            },
            placement: Placement::Path("/path_display"),
            name: "/name",
            folder: &[],
            scopes: &[],
        };
        let none = HashMap::new();
        assert_eq!(
            BASE.folders_of(&json!({"path_display": "/A/B c/f.txt"}), &none),
            ["A", "B c"]
        );
        assert!(BASE
            .folders_of(&json!({"path_display": "/f.txt"}), &none)
            .is_empty());
        let boxed = FileWrites {
            placement: Placement::Ancestors {
                entries: "/path_collection/entries",
                skip_id: "0",
            },
            ..BASE
        };
        let record = json!({"path_collection": {"total_count": 3, "entries": [
            {"type": "folder", "id": "0", "name": "All Files"},
            {"type": "folder", "id": "11", "name": "A"}, {"type": "folder", "id": "12", "name": "B"}]}});
        assert_eq!(boxed.folders_of(&record, &none), ["A", "B"]);
        let drive = FileWrites {
            placement: Placement::Parents("/parents"),
            ..BASE
        };
        let by_id: HashMap<String, serde_json::Value> = [
            (
                "fa".to_owned(),
                json!({"id": "fa", "name": "A", "parents": ["root-id"]}),
            ),
            (
                "fb".to_owned(),
                json!({"id": "fb", "name": "B", "parents": ["fa"]}),
            ),
        ]
        .into();
        assert_eq!(
            drive.folders_of(&json!({"name": "x", "parents": ["fb"]}), &by_id),
            ["A", "B"]
        );
        assert!(drive
            .folders_of(&json!({"name": "x", "parents": ["root-id"]}), &by_id)
            .is_empty());
    }

    #[test]
    fn a_template_takes_its_values_escaped_in_its_strings_only() {
        let filled = fill_template(
            r#"{"path":"{parent}/{name}","mode":"add","parents":["{parent}"],"n":1}"#,
            &[("parent", "/R \"q\""), ("name", "a\\b.txt")],
        )
        .unwrap();
        assert_eq!(
            filled,
            json!({"path": "/R \"q\"/a\\b.txt", "mode": "add", "parents": ["/R \"q\""], "n": 1})
        );
        assert!(fill_template("{", &[]).is_err());
    }
}
