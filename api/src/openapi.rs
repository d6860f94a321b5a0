//! The OpenAPI document, generated from the route annotations of the routes `routes::configure` registers,
//! and its UI (assets compiled into the binary). `docs/openapi.json` is its reviewed snapshot: a test fails
//! when the document differs, so a change to the API shows as a diff of that file.

use listbackup_projections::pagination::{DEFAULT_LIMIT, MAX_LIMIT};
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "ListBackup API", description = "Back up your SaaS platforms' data. Errors are application/problem+json."),
    components(schemas(crate::error::Problem, crate::error::FieldError, crate::error::ErrorCode)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

/// The whole document: [`ApiDoc`]'s info and components with every route `routes::configure` registers.
pub fn document() -> utoipa::openapi::OpenApi {
    use utoipa_actix_web::AppExt;
    let (_, mut document) = actix_web::App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(crate::routes::configure)
        .split_for_parts();
    add_limit_responses(&mut document);
    document
}

/// The answers every operation of a kind can give, added once here, after the routes, rather than on each
/// route's annotation (so that `schemathesis --checks all` finds every status and content type documented):
///
/// - the HTTP limits (issue 14), given before a handler runs: 429 with `Retry-After` (rate limits; the health
///   checks are exempt), 414 (path and query over 8 KiB), 431 (request head over the cap), and for operations with a body 413 (over 64 KiB),
///   408 (body read timeout) and 415 (a body not declared `application/json`);
/// - 400 (a query parameter, path or body that does not parse: every operation refuses unknown parameters),
///   401 and 403 (operations that need a token: none, a bad one, or one without the role), 404 (operations
///   with an id in their path: missing, or another account's), 412 (operations taking `If-Match`), 422
///   (operations taking `Idempotency-Key`: the key reused with another body), and 503 with `Retry-After` (the
///   database or NATS unavailable, or a write still colliding after its retries);
/// - every problem is `application/problem+json` (RFC 9457), also where a route's annotation says only
///   `body = Problem`;
/// - the rules of the fields the API parses the same way wherever they appear ([`field_rule`]: paging,
///   dates, ids, names, policies), on query and header parameters and on the properties of request bodies.
pub fn add_limit_responses(document: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::content::ContentBuilder;
    use utoipa::openapi::header::HeaderBuilder;
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    use utoipa::openapi::{Ref, RefOr, ResponseBuilder};

    let problem = |description: &str, retry_after: bool| {
        let mut response = ResponseBuilder::new().description(description).content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        );
        if retry_after {
            response = response.header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(
                        ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .minimum(Some(1)),
                    )
                    .description(Some("seconds until a request may succeed"))
                    .build(),
            );
        }
        RefOr::T(response.build())
    };
    let components = document.components.get_or_insert_with(Default::default);
    for (name, response) in [
        ("BadRequest", problem("VALIDATION_ERROR: a parameter, the path or the body does not parse or is not valid; `errors` names each field", false)),
        ("Unauthorized", problem("UNAUTHORIZED: no bearer token, or one that does not verify", false)),
        ("Forbidden", problem("FORBIDDEN: the token's roles do not allow this", false)),
        ("NotFound", problem("NOT_FOUND: no such resource in the token's account (another account's is answered the same)", false)),
        ("PreconditionFailed", problem("VERSION_CONFLICT: `If-Match` names another version than the current one", false)),
        ("UnprocessableContent", problem("VALIDATION_ERROR: the Idempotency-Key was used with another request", false)),
        ("Unavailable", problem("UNAVAILABLE: the database or NATS cannot be reached, or a write still collides after its retries; try again after Retry-After", true)),
        ("TooManyRequests", problem("RATE_LIMITED: a rate limit of the account, the client's address, failed authentication or platform calls", true)),
        ("HeadersTooLarge", problem("HEADERS_TOO_LARGE: the request line and headers are over the cap; the connection is closed", false)),
        ("PayloadTooLarge", problem("PAYLOAD_TOO_LARGE: the body is over 64 KiB; the connection is closed", false)),
        ("UriTooLong", problem("URI_TOO_LONG: the path and query are over 8 KiB", false)),
        ("UnsupportedMediaType", problem("UNSUPPORTED_MEDIA_TYPE: a body sent without `Content-Type: application/json`, or with a `Content-Encoding` (then `Accept-Encoding: identity`)", false)),
        ("RequestTimeout", problem("REQUEST_TIMEOUT: the body did not arrive within the body read timeout; the connection is closed", false)),
    ] {
        components.responses.insert(name.to_owned(), response);
    }
    for (path, item) in document.paths.paths.iter_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            let mut add = |status: &str, name: &str| {
                operation
                    .responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
            };
            let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
            let header = |name: &str| {
                operation.parameters.iter().flatten().any(|p| {
                    p.parameter_in == ParameterIn::Header && p.name.eq_ignore_ascii_case(name)
                })
            };
            let (if_match, idempotency_key) = (header("If-Match"), header("Idempotency-Key"));
            if !path.starts_with("/health/") {
                add("429", "TooManyRequests");
            }
            add("414", "UriTooLong");
            add("431", "HeadersTooLarge");
            if operation.request_body.is_some() {
                add("413", "PayloadTooLarge");
                add("408", "RequestTimeout");
                add("415", "UnsupportedMediaType");
            }
            add("400", "BadRequest");
            if secured {
                add("401", "Unauthorized");
                add("403", "Forbidden");
            }
            if path.contains('{') {
                add("404", "NotFound");
            }
            if if_match {
                add("412", "PreconditionFailed");
            }
            if idempotency_key {
                add("422", "UnprocessableContent");
            }
            add("503", "Unavailable");
            problems_as_problem_json(operation);
            bound_parameters(operation);
        }
    }
    bound_request_bodies(document);
    unique_operation_ids(document);
    link_created_resources(document);
}

/// The most characters of a `cursor` the API issues (`v1:` and a UUID, base64url): 56; a little room.
pub const MAX_CURSOR_CHARS: usize = 64;

/// Every inline response whose body is a `Problem` is served as `application/problem+json`: its content is
/// moved there from `application/json`.
fn problems_as_problem_json(operation: &mut utoipa::openapi::path::Operation) {
    use utoipa::openapi::RefOr;
    for response in operation.responses.responses.values_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        let is_problem = response.content.get("application/json").is_some_and(
            |c| matches!(&c.schema, Some(RefOr::Ref(r)) if r.ref_location.ends_with("/Problem")),
        );
        if is_problem {
            if let Some(content) = response.content.shift_remove("application/json") {
                response
                    .content
                    .insert("application/problem+json".to_owned(), content);
            }
        }
    }
}

/// The schema of a field the API parses the same way wherever it appears, by its name (the one list of
/// them): `None` for a field with no shared rule. The bounds are the parsers' own constants.
fn field_rule(name: &str) -> Option<utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>> {
    use utoipa::openapi::schema::{AnyOfBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type};
    let string = || ObjectBuilder::new().schema_type(Type::String);
    match name {
        // `AsOf::parse`: a time or a position.
        "asOf" => Some(
            AnyOfBuilder::new()
                .item(
                    string()
                        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                        .description(Some("an RFC 3339 date-time")),
                )
                .item(
                    string()
                        .pattern(Some("^[0-9]{1,18}$"))
                        .description(Some("an event's `position`")),
                )
                .into(),
        ),
        "schedule" => Some(schedule_schema()),
        // Data type names: the catalog's, never empty, no control character.
        "dataTypes" => Some(
            utoipa::openapi::schema::ArrayBuilder::new()
                .items(
                    string()
                        .min_length(Some(1))
                        .pattern(Some(NO_CONTROL_PATTERN)),
                )
                .into(),
        ),
        _ => object_rule(name).map(|rule| rule.build().into()),
    }
}

/// `TimeZone`: the IANA names a schedule's `timezone` takes (the tz database chrono-tz carries).
fn time_zone_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(
            listbackup_domain::source::schedule::time_zone_names().collect::<Vec<_>>(),
        ))
        .description(Some("an IANA time zone, e.g. `Europe/Paris`"))
        .into()
}

/// A source's `schedule` as `Schedule::parse` takes it: one frequency with the fields that apply to it, or a
/// 5-field cron expression; `time` is `HH:MM`, `timezone` an IANA name (default UTC). Whether a cron
/// expression ever fires is not a schema's to say (a 400 naming `schedule.cron`).
fn schedule_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use listbackup_domain::source::schedule::weekday_names;
    use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Type};
    let string = || ObjectBuilder::new().schema_type(Type::String);
    let time = || string().pattern(Some("^([01][0-9]|2[0-3]):[0-5][0-9]$"));
    // One list of ~600 names, referenced (see [`time_zone_schema`]).
    let timezone = || utoipa::openapi::Ref::from_schema_name("TimeZone");
    let kind = |frequencies: &[&str], with: Vec<(&str, ObjectBuilder)>| {
        let mut object = ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "frequency",
                string().enum_values(Some(frequencies.to_vec())),
            )
            .required("frequency")
            .property("timezone", timezone())
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        for (name, schema) in with {
            object = object.property(name, schema);
        }
        object
    };
    OneOfBuilder::new()
        .description(Some(
            "`{frequency: manual|hourly|daily|weekly|monthly, time?: \"HH:MM\", dayOfWeek?, dayOfMonth?, \
             timezone?}` or `{cron, timezone?}`; default daily at 02:00 UTC",
        ))
        .item(kind(&["manual"], vec![]))
        .item(kind(&["hourly", "daily"], vec![("time", time())]))
        .item(kind(
            &["weekly"],
            vec![
                ("time", time()),
                (
                    "dayOfWeek",
                    string().enum_values(Some(weekday_names().collect::<Vec<_>>())),
                ),
            ],
        ))
        .item(kind(
            &["monthly"],
            vec![
                ("time", time()),
                (
                    "dayOfMonth",
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(1))
                        .maximum(Some(31)),
                ),
            ],
        ))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property(
                    "cron",
                    string()
                        .pattern(Some("^\\s*[0-9*/,A-Za-z-]+(\\s+[0-9*/,A-Za-z-]+){4}\\s*$"))
                        .description(Some("minute hour day-of-month month day-of-week")),
                )
                .required("cron")
                .property("timezone", timezone())
                .additional_properties(Some(AdditionalProperties::FreeForm(false))),
        )
        .into()
}

/// [`field_rule`]'s rules that are one object schema.
fn object_rule(name: &str) -> Option<utoipa::openapi::schema::ObjectBuilder> {
    use listbackup_domain::platform::AuthType;
    use listbackup_domain::source::{KeepLast, RetentionDays};
    use listbackup_domain::values::DisplayName;
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
    let string = || ObjectBuilder::new().schema_type(Type::String);
    let integer = |min: u32, max: u32| {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(min))
            .maximum(Some(max))
    };
    let one_of = |values: Vec<&str>| string().enum_values(Some(values));
    Some(match name {
        "limit" => ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(MAX_LIMIT as f64))
            .default(Some(DEFAULT_LIMIT.into()))
            .description(Some("items a page holds at most")),
        "cursor" => string()
            .max_length(Some(MAX_CURSOR_CHARS))
            .pattern(Some("^[A-Za-z0-9_-]+$"))
            .description(Some(
                "`nextCursor` of the previous page, as issued (opaque: any other value is a 400)",
            )),
        "from" | "to" => string()
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some("an RFC 3339 date-time")),
        "connectionId" | "sourceId" | "groupId" | "jobId" | "snapshot" => {
            string().format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
        }
        "platformId" => one_of(platform_ids(None)),
        // What `POST /connections` and `POST /connections/oauth/start` take: the platforms of that kind.
        "platformId/CreateConnection" => one_of(platform_ids(Some(AuthType::ApiKey))),
        "platformId/StartOauth" => one_of(platform_ids(Some(AuthType::Oauth2))),
        // `*`, a bare version, or a list of entity-tags (`extract::if_match`; RFC 9110 §8.8.3, §13.1.1).
        "If-Match" => string()
            .pattern(Some(
                "^(\\*|[0-9]{1,18}|(W/)?\"[\\x21\\x23-\\x7E]*\"([ \\t]*,[ \\t]*(W/)?\"[\\x21\\x23-\\x7E]*\")*)$",
            ))
            .description(Some(
                "`*`, or ETags of the resource (`\"3\"`, several separated by commas); compared strongly: a weak `W/\"3\"` never matches",
            )),
        "after" => string()
            .pattern(Some("^[0-9]{1,18}$"))
            .description(Some("an event's `position`, as a page of this log gave it")),
        "aggregateType" => one_of(crate::routes::audit::AGGREGATE_TYPES.to_vec()),
        // Trimmed, 1 to 200 characters, none a control character (`DisplayName::parse`).
        "name" => string()
            .min_length(Some(1))
            .max_length(Some(DisplayName::MAX_CHARS))
            .pattern(Some(NAME_PATTERN)),
        "description" => string()
            .max_length(Some(
                listbackup_domain::source_group::Description::MAX_CHARS,
            ))
            .pattern(Some(NO_CONTROL_PATTERN)),
        // A snapshot export's format; a search text and a data type name (no NUL: PostgreSQL text holds none).
        "format" => one_of(vec!["ndjson", "csv"]),
        "q" | "dataType" => string().pattern(Some(NO_CONTROL_PATTERN)),
        "retentionDays" => integer(RetentionDays::MIN, RetentionDays::MAX),
        "keepLast" => integer(KeepLast::MIN, KeepLast::MAX),
        // 1 to 255 visible ASCII characters (`idempotency::key`).
        "Idempotency-Key" => string()
            .min_length(Some(1))
            .max_length(Some(255))
            .pattern(Some("^[!-~]+$")),
        _ => return None,
    })
}

/// No control character (C0, DEL, C1).
const NO_CONTROL_PATTERN: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";

/// The platforms of the catalog, those that connect with `auth` where it is given.
fn platform_ids(auth: Option<listbackup_domain::platform::AuthType>) -> Vec<&'static str> {
    listbackup_domain::platform::CATALOG
        .iter()
        .filter(|p| auth.is_none_or(|auth| p.supports(auth)))
        .map(|p| p.id)
        .collect()
}

/// A display name: at least one character that is not white space, and no control character (C0, DEL, C1).
const NAME_PATTERN: &str =
    "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$";

/// Query and header parameters with a shared rule ([`field_rule`]) get its schema; a parameter that may be
/// absent keeps its `null` (a header's `Option` shows as `["string", "null"]`).
fn bound_parameters(operation: &mut utoipa::openapi::path::Operation) {
    for parameter in operation.parameters.iter_mut().flatten() {
        if !matches!(
            parameter.parameter_in,
            ParameterIn::Query | ParameterIn::Header
        ) {
            continue;
        }
        if let Some(rule) = field_rule(&parameter.name) {
            parameter.schema = Some(rule);
        } else if let Some(schema) = parameter.schema.as_mut() {
            refuse_nul(schema);
        }
    }
}

/// The properties of every request body's schema (components named by the operations' `requestBody`) with
/// a shared rule get it, keeping their `null` where the field may be null. Response schemas are left as
/// they are: the rules say what the API accepts.
fn bound_request_bodies(document: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::schema::{Schema, SchemaType, Type};
    use utoipa::openapi::RefOr;
    let mut bodies = std::collections::BTreeSet::new();
    for item in document.paths.paths.values() {
        for operation in [&item.put, &item.post, &item.patch].into_iter().flatten() {
            let content = operation
                .request_body
                .iter()
                .flat_map(|b| b.content.values());
            for content in content {
                // The body's schema, or each choice of an optional one (`oneOf: [null, {$ref}]`).
                let choices = match &content.schema {
                    Some(RefOr::T(Schema::OneOf(one_of))) => one_of.items.iter().collect(),
                    Some(RefOr::T(Schema::AnyOf(any_of))) => any_of.items.iter().collect(),
                    Some(schema) => vec![schema],
                    None => Vec::new(),
                };
                for choice in choices {
                    if let RefOr::Ref(r) = choice {
                        bodies.insert(
                            r.ref_location
                                .rsplit('/')
                                .next()
                                .unwrap_or_default()
                                .to_owned(),
                        );
                    }
                }
            }
        }
    }
    let Some(components) = document.components.as_mut() else {
        return;
    };
    components
        .schemas
        .insert("TimeZone".to_owned(), RefOr::T(time_zone_schema()));
    for name in bodies {
        let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(&name) else {
            continue;
        };
        for (field, property) in object.properties.iter_mut() {
            // A rule of this body's own (`platformId/CreateConnection`) before the field's everywhere.
            let Some(rule) = object_rule(&format!("{field}/{name}"))
                .map(|rule| RefOr::T(Schema::Object(rule.build())))
                .or_else(|| field_rule(field))
            else {
                refuse_nul(property);
                continue;
            };
            let (nullable, description) = match property {
                RefOr::T(Schema::Object(o)) => (
                    matches!(&o.schema_type, SchemaType::Array(types) if types.contains(&Type::Null)),
                    o.description.clone(),
                ),
                RefOr::T(Schema::Array(a)) => (
                    matches!(&a.schema_type, SchemaType::Array(types) if types.contains(&Type::Null)),
                    a.description.clone(),
                ),
                _ => (false, None),
            };
            *property = if nullable { or_null(rule) } else { rule };
            // The field's own description stays where the rule has none.
            match property {
                RefOr::T(Schema::Object(o)) if o.description.is_none() => {
                    o.description = description
                }
                RefOr::T(Schema::Array(a)) if a.description.is_none() => {
                    a.description = description
                }
                _ => {}
            }
        }
    }
}

/// No string the API reads may hold a NUL (PostgreSQL text cannot; `extract` answers 400 naming the field): a
/// string schema with no pattern of its own says so.
fn refuse_nul(schema: &mut utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>) {
    use utoipa::openapi::schema::{Schema, SchemaType, Type};
    use utoipa::openapi::RefOr;
    let RefOr::T(Schema::Object(object)) = schema else {
        return;
    };
    let is_string = match &object.schema_type {
        SchemaType::Type(t) => *t == Type::String,
        SchemaType::Array(types) => types.contains(&Type::String),
        _ => false,
    };
    if is_string
        && object.pattern.is_none()
        && object.enum_values.is_none()
        && object.format.is_none()
    {
        object.pattern = Some("^[^\\u0000]*$".to_owned());
    }
}

/// `rule`, or `null` (a field the body may send as null, as an absent one).
fn or_null(
    rule: utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
    use utoipa::openapi::RefOr;
    match rule {
        RefOr::T(Schema::Object(mut object)) => {
            if let SchemaType::Type(t) = object.schema_type.clone() {
                object.schema_type = SchemaType::from_iter([t, Type::Null]);
            }
            RefOr::T(Schema::Object(object))
        }
        RefOr::T(Schema::Array(mut array)) => {
            if let SchemaType::Type(t) = array.schema_type.clone() {
                array.schema_type = SchemaType::from_iter([t, Type::Null]);
            }
            RefOr::T(Schema::Array(array))
        }
        RefOr::T(Schema::OneOf(mut one_of)) => {
            one_of
                .items
                .push(ObjectBuilder::new().schema_type(Type::Null).into());
            RefOr::T(Schema::OneOf(one_of))
        }
        other => other,
    }
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Every operation's `operationId` is unique, as OpenAPI requires (client generators name methods after it):
/// utoipa takes the handler's name, which several resources share (`get`, `list`, `create`, `test`…); such a
/// name is prefixed with the operation's tag (`sources_get`, `webhooks_test`). A name only one handler has is
/// kept as it is.
fn unique_operation_ids(document: &mut utoipa::openapi::OpenApi) {
    use std::collections::HashMap;
    let mut uses: HashMap<String, usize> = HashMap::new();
    for item in document.paths.paths.values() {
        for operation in [&item.get, &item.put, &item.post, &item.delete, &item.patch]
            .into_iter()
            .flatten()
        {
            if let Some(id) = &operation.operation_id {
                *uses.entry(id.clone()).or_default() += 1;
            }
        }
    }
    for item in document.paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            let Some(id) = &operation.operation_id else {
                continue;
            };
            if uses.get(id).copied().unwrap_or(0) > 1 {
                let tag = operation
                    .tags
                    .as_ref()
                    .and_then(|tags| tags.first())
                    .map(|tag| tag.replace('-', "_"))
                    .unwrap_or_default();
                operation.operation_id = Some(format!("{tag}_{id}"));
            }
        }
    }
}

/// OpenAPI links from the operations that create a resource to the operations on it (`$response.body#/…`
/// as their `id`), so that a client generator or a stateful tester (Schemathesis) can follow them: the
/// creating operation, the status it answers, the body field holding the new id, and the path under which
/// the resource's operations are. Only operations whose one path parameter is `id` are linked, event streams
/// aside.
const CREATED_RESOURCES: [(&str, &str, &str, &str); 6] = [
    ("/connections", "201", "connectionId", "/connections/{id}"),
    ("/sources", "201", "sourceId", "/sources/{id}"),
    ("/source-groups", "201", "groupId", "/source-groups/{id}"),
    ("/webhooks", "201", "webhookId", "/webhooks/{id}"),
    ("/jobs", "202", "jobId", "/jobs/{id}"),
    ("/sources/{id}/sync", "202", "jobId", "/jobs/{id}"),
];

fn link_created_resources(document: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::extensions::Extensions;
    use utoipa::openapi::link::LinkBuilder;
    use utoipa::openapi::RefOr;
    for (creating, status, field, under) in CREATED_RESOURCES {
        let mut targets: Vec<String> = Vec::new();
        for (path, item) in &document.paths.paths {
            let own = path == under || path.starts_with(&format!("{under}/"));
            if !own || path.matches('{').count() != 1 {
                continue;
            }
            for operation in [&item.get, &item.put, &item.post, &item.delete, &item.patch]
                .into_iter()
                .flatten()
                .filter(|operation| !streams(operation))
            {
                targets.extend(operation.operation_id.clone());
            }
        }
        let Some(RefOr::T(response)) = document
            .paths
            .paths
            .get_mut(creating)
            .and_then(|item| item.post.as_mut())
            .and_then(|operation| operation.responses.responses.get_mut(status))
        else {
            continue;
        };
        for target in targets {
            let mut link = LinkBuilder::new()
                .parameter("id", format!("$response.body#/{field}"))
                .build();
            // utoipa 5.5 serializes `Link::operation_id` as `operation_id`, which no tool reads (OpenAPI's
            // field is `operationId`): the field is written through the link's flattened map instead.
            link.extensions = Some(Extensions::from_iter([(
                "operationId",
                serde_json::Value::from(target.clone()),
            )]));
            response.links.insert(target, RefOr::T(link));
        }
    }
}

/// Whether the operation answers with an event stream (which lasts as long as its job): not linked, so that
/// a tester following links does not wait on it.
fn streams(operation: &utoipa::openapi::path::Operation) -> bool {
    operation.responses.responses.values().any(|response| {
        matches!(response, utoipa::openapi::RefOr::T(response)
            if response.content.contains_key("text/event-stream"))
    })
}

#[cfg(test)]
mod tests {
    /// An optional body (`oneOf: [null, {$ref}]`) gets the rules of a body, NUL refused in its strings.
    #[test]
    fn an_optional_body_is_bound_like_any_other() {
        let document = serde_json::to_value(super::document()).unwrap();
        let reconnect = &document["components"]["schemas"]["ReconnectOauth"]["properties"];
        assert_eq!(reconnect["returnUrl"]["pattern"], "^[^\\u0000]*$");
        assert!(
            reconnect["dataTypes"].to_string().contains("pattern"),
            "{reconnect}"
        );
        // Still nullable, and still described.
        assert_eq!(
            reconnect["dataTypes"]["type"],
            serde_json::json!(["array", "null"])
        );
        assert!(
            reconnect["dataTypes"]["description"].is_string(),
            "{reconnect}"
        );
    }

    #[test]
    fn operation_ids_are_unique_and_links_name_existing_operations() {
        let document = super::document();
        let mut ids = std::collections::HashSet::new();
        for item in document.paths.paths.values() {
            for operation in [&item.get, &item.put, &item.post, &item.delete, &item.patch]
                .into_iter()
                .flatten()
            {
                let id = operation.operation_id.clone().expect("an operationId");
                assert!(ids.insert(id.clone()), "{id} is used twice");
            }
        }
        let created = &document.paths.paths["/sources"]
            .post
            .as_ref()
            .unwrap()
            .responses
            .responses["201"];
        let utoipa::openapi::RefOr::T(created) = created else {
            panic!("an inline response")
        };
        assert!(created.links.contains_key("sources_get"));
        assert!(!created.links.is_empty());
        // As served: `operationId`, naming an operation of the document.
        let served = serde_json::to_value(&created.links).unwrap();
        for (name, link) in served.as_object().unwrap() {
            let target = link["operationId"].as_str().expect("an operationId");
            assert_eq!(target, name);
            assert!(ids.contains(target), "{target}");
            assert!(link.get("operation_id").is_none(), "{link}");
        }
    }

    /// The document is the reviewed one. After an intended change, run with `UPDATE_OPENAPI_SNAPSHOT=1` and
    /// review the diff of `docs/openapi.json`.
    #[test]
    fn the_openapi_document_is_the_reviewed_snapshot() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
        let current = super::document().to_pretty_json().unwrap() + "\n";
        if std::env::var_os("UPDATE_OPENAPI_SNAPSHOT").is_some() {
            std::fs::write(path, &current).unwrap();
        }
        let reviewed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            current == reviewed,
            "/openapi.json differs from docs/openapi.json: review the change and run \
             `UPDATE_OPENAPI_SNAPSHOT=1 cargo test -p listbackup-api openapi` to accept it"
        );
    }
}
