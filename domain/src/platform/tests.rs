//! The catalog's own consistency: every platform's entry, checked against the rules of the types.

use super::*;
use std::collections::BTreeSet;

fn auth_fields(auth: &ApiAuth) -> Vec<&'static str> {
    let part = |p: &BasicPart| match *p {
        BasicPart::Literal(_) => None,
        BasicPart::Field(f) | BasicPart::FieldWithSuffix(f, _) => Some(f),
    };
    match auth {
        ApiAuth::Bearer { token_field } | ApiAuth::Header { token_field, .. } => {
            vec![token_field]
        }
        ApiAuth::Basic { user, password } => {
            [part(user), part(password)].into_iter().flatten().collect()
        }
    }
}

#[test]
fn twelve_unique_ids() {
    let ids: BTreeSet<_> = CATALOG.iter().map(|p| p.id).collect();
    assert_eq!(CATALOG.len(), 12);
    assert_eq!(ids.len(), 12);
    let expected = [
        "keap",
        "stripe",
        "hubspot",
        "shopify",
        "quickbooks",
        "google",
        "dropbox",
        "box",
        "gohighlevel",
        "mailchimp",
        "activecampaign",
        "zendesk",
    ];
    assert_eq!(ids, expected.into_iter().collect());
    for id in expected {
        assert_eq!(find(id).map(|p| p.id), Some(id));
    }
}

#[test]
fn categories_are_known() {
    let known = [
        "crm",
        "payments",
        "ecommerce",
        "accounting",
        "file_storage",
        "marketing",
        "support",
    ];
    for p in CATALOG {
        assert!(known.contains(&p.category), "{}: {}", p.id, p.category);
        assert!(!p.auth_types.is_empty(), "{}", p.id);
    }
}

#[test]
fn api_key_platforms_have_secret_fields_and_consistent_auth() {
    for p in CATALOG.iter().filter(|p| p.supports(AuthType::ApiKey)) {
        assert!(
            p.credential_fields.iter().any(|f| f.secret),
            "{} has no secret field",
            p.id
        );
        let auth = p
            .api_key_auth
            .unwrap_or_else(|| panic!("{} has no api_key_auth", p.id));
        for field in auth_fields(&auth) {
            assert!(
                p.credential_field(field).is_some(),
                "{}: auth uses unknown field {field}",
                p.id
            );
        }
        let names: BTreeSet<_> = p.credential_fields.iter().map(|f| f.name).collect();
        assert_eq!(
            names.len(),
            p.credential_fields.len(),
            "{}: duplicate field",
            p.id
        );
    }
}

#[test]
fn oauth_only_platforms_have_no_credential_fields() {
    for p in CATALOG.iter().filter(|p| !p.supports(AuthType::ApiKey)) {
        assert!(p.credential_fields.is_empty(), "{}", p.id);
        assert!(p.api_key_auth.is_none(), "{}", p.id);
    }
}

#[test]
fn every_url_placeholder_is_resolvable() {
    for p in CATALOG {
        let templates = [p.api_base_url, p.identity.path];
        for name in templates.iter().flat_map(|t| url_placeholders(t)) {
            let resolvable = p.credential_field(name).is_some()
                || match p.url_param(name) {
                    // A derived value must come from a real credential field.
                    Some(UrlParam::SuffixOf { field, .. }) => p.credential_field(field).is_some(),
                    Some(UrlParam::FromOauth { .. }) => p.supports(AuthType::Oauth2),
                    None => false,
                };
            assert!(resolvable, "{}: unknown placeholder {{{name}}}", p.id);
        }
        for param in p.url_params {
            assert!(
                p.credential_field(param.name()).is_none(),
                "{}: {} is both a field and a url param",
                p.id,
                param.name()
            );
        }
        assert!(p.api_base_url.starts_with("https://") || p.api_base_url.starts_with('{'));
        assert!(!p.api_base_url.ends_with('/'), "{}", p.id);
        assert!(p.identity.path.starts_with('/'), "{}", p.id);
    }
}

/// Every credential value that names a host, or a part of one, is held to a shape the platform documents:
/// a whole URL to its documented domains, a placeholder of a host (`{subdomain}`, `{shop}`) to one that cannot
/// leave the platform's domain. Nothing a customer types can point the service at a host of their choosing.
#[test]
fn every_credential_that_names_a_host_has_a_documented_shape() {
    for p in CATALOG {
        for field in p.credential_fields {
            if field.field_type == CredentialFieldType::Url {
                assert!(
                    matches!(field.shape, FieldShape::AccountUrl(domains) if !domains.is_empty()),
                    "{}.{}: a URL field names its documented domains",
                    p.id,
                    field.name
                );
            }
        }
        let mut templates = vec![p.api_base_url];
        if let Some(oauth) = p.oauth {
            templates.extend([oauth.authorize_url, oauth.token_url]);
            // The OAuth start request's account host is held to the field's own shape, the one every
            // request checks again.
            if let Some(host) = oauth.account_host {
                assert_eq!(
                    p.credential_field(host.field).map(|f| f.shape),
                    Some(host.shape),
                    "{}: {}",
                    p.id,
                    host.field
                );
            }
        }
        for template in templates {
            // The placeholders that are, or are in, the host: everything before the first `/` of the path.
            let authority = template
                .split_once("://")
                .map_or(template, |(_, rest)| rest.split('/').next().unwrap_or(""));
            let authority = if template.starts_with('{') {
                &template[..=template.find('}').unwrap()]
            } else {
                authority
            };
            for name in url_placeholders(authority) {
                let shaped = match (p.credential_field(name), p.url_param(name)) {
                    (Some(field), _) => !matches!(field.shape, FieldShape::Any),
                    (None, Some(UrlParam::SuffixOf { field, .. })) => p
                        .credential_field(field)
                        .is_some_and(|f| f.shape == FieldShape::DataCenterSuffix),
                    _ => false,
                };
                assert!(shaped, "{}: {{{name}}} in the host of {template}", p.id);
            }
        }
    }
}

#[test]
fn oauth_platforms_have_endpoints_and_scopes() {
    for p in CATALOG {
        if p.supports(AuthType::Oauth2) {
            let oauth = p.oauth.unwrap_or_else(|| panic!("{} has no oauth", p.id));
            assert!(!p.oauth_scopes.is_empty(), "{} has no scope", p.id);
            assert!(oauth.authorize_url.starts_with("https://"), "{}", p.id);
            assert!(oauth.token_url.starts_with("https://"), "{}", p.id);
            assert_eq!(auth_fields(&oauth.api_auth), vec![OAUTH_ACCESS_TOKEN]);
            // OAuth URLs may only use placeholders the flow knows (Shopify's shop).
            for url in [oauth.authorize_url, oauth.token_url] {
                for name in url_placeholders(url) {
                    assert!(p.credential_field(name).is_some(), "{}: {name}", p.id);
                }
            }
        } else {
            assert!(p.oauth.is_none(), "{}", p.id);
            assert!(p.oauth_scopes.is_empty(), "{}", p.id);
        }
    }
}

#[test]
fn data_types_are_unique_snake_case_and_described() {
    for p in CATALOG {
        assert!(!p.data_types.is_empty(), "{}", p.id);
        let names: BTreeSet<_> = p.data_types.iter().map(|d| d.name).collect();
        assert_eq!(names.len(), p.data_types.len(), "{}: duplicate", p.id);
        for d in p.data_types {
            assert!(
                d.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}: {}",
                p.id,
                d.name
            );
            assert!(!d.description.is_empty(), "{}: {}", p.id, d.name);
        }
    }
}

#[test]
fn no_client_secrets_in_the_catalog() {
    for p in CATALOG {
        let text = format!("{p:?}").to_lowercase();
        assert!(!text.contains("client_secret"), "{}", p.id);
        assert!(!text.contains("client_id"), "{}", p.id);
    }
}

#[test]
fn placeholders_parse() {
    let names: Vec<_> = url_placeholders("https://{a}.x/{b}/c").collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(url_placeholders("https://x/y").count(), 0);
}

#[test]
fn every_listing_is_well_formed() {
    for p in CATALOG {
        for d in p.data_types {
            let Some(listing) = &d.listing else { continue };
            let at = format!("{}/{}", p.id, d.name);
            assert!(!listing.endpoints.is_empty(), "{at}");
            // The placeholder a parent's or a walked folder's id fills.
            let parent_placeholder = listing
                .per_parent
                .map(|parent| parent.placeholder)
                .or(listing.walk.map(|walk| walk.placeholder));
            for endpoint in listing.endpoints {
                assert!(endpoint.path.starts_with('/'), "{at}");
                if let Some(body) = endpoint.body {
                    assert!(
                        serde_json::from_str::<serde_json::Value>(body).is_ok(),
                        "{at}: the body is JSON"
                    );
                }
                for name in url_placeholders(endpoint.path) {
                    if parent_placeholder == Some(name) {
                        continue;
                    }
                    assert!(
                        p.credential_field(name).is_some() || p.url_param(name).is_some(),
                        "{at}: unknown placeholder {{{name}}}"
                    );
                }
            }
            // Query values take the same placeholders as paths.
            for (_, value) in listing.query {
                for name in url_placeholders(value) {
                    let parent = listing
                        .per_parent
                        .is_some_and(|parent| parent.placeholder == name);
                    assert!(
                        parent || p.credential_field(name).is_some() || p.url_param(name).is_some(),
                        "{at}: unknown placeholder {{{name}}} in the query"
                    );
                }
            }
            assert!(
                listing.records.is_empty() || listing.records.starts_with('/'),
                "{at}"
            );
            if listing.single_object {
                // One object is one record: nothing to page.
                assert_eq!(listing.pagination, Pagination::Single, "{at}");
            }
            match listing.pagination {
                Pagination::Single => {}
                Pagination::Offset { overlap, .. } => {
                    // Each page must move forward.
                    assert!(overlap >= 1 && overlap < listing.page_size.size, "{at}");
                }
                // A size sent as a parameter is a number of records.
                _ => assert!(
                    listing.page_size.param.is_none() || listing.page_size.size > 0,
                    "{at}"
                ),
            }
            if let Pagination::ContinueWithCursor { path, .. } = listing.pagination {
                assert!(path.starts_with('/'), "{at}");
                assert!(
                    listing
                        .endpoints
                        .iter()
                        .all(|e| e.method == HttpMethod::Post),
                    "{at}: an RPC continuation continues a POST"
                );
            }
            if let Some(inc) = listing.incremental {
                assert!(inc.lookback > Duration::ZERO, "{at}");
                assert!(!inc.cursor_field.is_empty(), "{at}");
                if let TimeFilter::InStatement { template, .. } = inc.filter {
                    // The incremental statement replaces the listing's, so it pages the same way.
                    assert!(
                        matches!(
                            listing.pagination,
                            Pagination::Offset {
                                offset: OffsetParam::Statement { .. },
                                ..
                            }
                        ),
                        "{at}: a statement filter needs a statement listing"
                    );
                    for placeholder in ["{since}", "{start}", "{max}"] {
                        assert!(template.contains(placeholder), "{at}: no {placeholder}");
                    }
                }
            }
            if let Pagination::Offset {
                offset: OffsetParam::Statement { template, .. },
                ..
            } = listing.pagination
            {
                assert!(
                    listing.page_size.param.is_none(),
                    "{at}: the size is in the statement"
                );
                for placeholder in ["{start}", "{max}"] {
                    assert!(template.contains(placeholder), "{at}: no {placeholder}");
                }
            }
            if let Some(parent) = listing.per_parent {
                let parents = p.listing(parent.data_type);
                assert!(
                    parents.is_some(),
                    "{at}: its parent {} is not listed",
                    parent.data_type
                );
                assert!(
                    parents.unwrap().per_parent.is_none(),
                    "{at}: one level of parents"
                );
                let placeholder = format!("{{{}}}", parent.placeholder);
                assert!(
                    listing
                        .endpoints
                        .iter()
                        .any(|e| e.path.contains(&placeholder)
                            || e.body.is_some_and(|b| b.contains(&placeholder)))
                        || listing.query.iter().any(|(_, v)| v.contains(&placeholder)),
                    "{at}: no {placeholder} to fill"
                );
                assert!(listing.walk.is_none(), "{at}: a walk or parents, not both");
                // A time filter applies to each parent's listing alike; a search's keyset does not.
                assert!(
                    listing
                        .incremental
                        .is_none_or(|inc| matches!(inc.filter, TimeFilter::QueryParam { .. })),
                    "{at}: per-parent listings filter by a query parameter or not at all"
                );
                // Listing the children lists the parents: the OAuth consent must cover both.
                let parent_type = p.data_type(parent.data_type).unwrap();
                for scope in parent_type.scopes {
                    // A parent whose own scope is for more than listing it (file contents) is listed with
                    // the lesser scope that suffices, or with none beyond the parent's other scopes.
                    let lesser = LISTING_SCOPES
                        .iter()
                        .find(|(platform, full, _)| *platform == p.id && full == scope)
                        .map(|(_, _, lesser)| *lesser);
                    let covered = match lesser {
                        None => d.scopes.contains(scope),
                        Some(None) => true,
                        Some(Some(lesser)) => {
                            d.scopes.contains(scope) || d.scopes.contains(&lesser)
                        }
                    };
                    assert!(covered, "{at}: lacks its parent's scope {scope}");
                }
            } else {
                assert!(listing.parents_where.is_empty(), "{at}: no parents");
            }
            if let Some(walk) = listing.walk {
                let placeholder = format!("{{{}}}", walk.placeholder);
                assert!(
                    listing
                        .endpoints
                        .iter()
                        .all(|e| e.path.contains(&placeholder)),
                    "{at}: every request of a walk is about one folder"
                );
                assert!(!walk.root.is_empty(), "{at}");
                assert!(listing.incremental.is_none(), "{at}: walks are whole");
            }
            if let Some(content) = listing.content {
                assert!(!content.requests.is_empty(), "{at}");
                // An incremental run of a file listing skips unchanged files by their version; the records
                // themselves are listed whole, so every run's manifest names every file.
                assert!(listing.incremental.is_none(), "{at}");
                for request in content.requests {
                    assert!(request.path.starts_with('/'), "{at}");
                    assert!(request.version.starts_with('/'), "{at}: a JSON pointer");
                    assert!(
                        url_placeholders(request.path).count() >= 1 || request.json_arg.is_some(),
                        "{at}: a content request is about one record"
                    );
                    if let ContentHost::Other { name, url } = request.host {
                        assert!(url.starts_with("https://") && !url.ends_with('/'), "{at}");
                        assert!(
                            name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
                            "{at}: {name} names an environment variable"
                        );
                    }
                }
            }
            for condition in listing.records_where.iter().chain(listing.parents_where) {
                assert!(condition.pointer.starts_with('/'), "{at}");
            }
        }
    }
}

#[test]
fn conditions_read_strings_and_scalars_and_absent_values() {
    let record = serde_json::json!({".tag": "file", "is_downloadable": false, "size": 12,
        "mimeType": "application/vnd.google-apps.folder"});
    assert!(Condition::is("/.tag", "file").holds(&record));
    assert!(!Condition::is("/.tag", "folder").holds(&record));
    assert!(!Condition::is_not("/is_downloadable", "false").holds(&record));
    assert!(Condition::is("/size", "12").holds(&record));
    // Absent: never equal, never a prefix.
    assert!(Condition::is_not("/missing", "x").holds(&record));
    assert!(!Condition::starts_with("/missing", "").holds(&record));
    assert!(Condition::not_starts_with("/missing", "x").holds(&record));
    assert!(Condition::starts_with("/mimeType", "application/vnd.google-apps.").holds(&record));
    assert!(
        !Condition::not_starts_with("/mimeType", "application/vnd.google-apps.").holds(&record)
    );
    assert!(Condition::all_hold(&[], &record));
}

#[test]
fn error_matches_read_the_status_and_a_prefix_of_the_body() {
    let google = find("google").unwrap().rate.limited_when;
    let body = |reason: &str| {
        serde_json::json!({"error": {"code": 403, "message": "x",
            "errors": [{"domain": "usageLimits", "reason": reason, "message": "x"}]}})
    };
    assert!(google
        .iter()
        .any(|m| m.matches(403, &body("userRateLimitExceeded"))));
    assert!(google
        .iter()
        .any(|m| m.matches(403, &body("rateLimitExceeded"))));
    assert!(!google
        .iter()
        .any(|m| m.matches(403, &body("insufficientFilePermissions"))));
    assert!(!google
        .iter()
        .any(|m| m.matches(400, &body("rateLimitExceeded"))));
    let dropbox = find("dropbox").unwrap().listing("files").unwrap().gone;
    let gone =
        serde_json::json!({"error_summary": "path/not_found/...", "error": {".tag": "path"}});
    assert!(dropbox.iter().any(|m| m.matches(409, &gone)));
    let other = serde_json::json!({"error_summary": "path/restricted_content/"});
    assert!(!dropbox.iter().any(|m| m.matches(409, &other)));
}

#[test]
fn every_platform_declares_how_it_rejects_credentials() {
    let null = serde_json::Value::Null;
    for platform in CATALOG {
        assert!(
            !platform.credentials_rejected.is_empty(),
            "{}: how does it say the credentials are not valid?",
            platform.id
        );
        // Any 401 is a rejection (RFC 9110 §15.5.2), with or without a body.
        assert!(platform.rejects_credentials(401, &null), "{}", platform.id);
        assert!(!platform.rejects_credentials(500, &null), "{}", platform.id);
        assert!(!platform.rejects_credentials(404, &null), "{}", platform.id);
    }
    // ActiveCampaign sends no 401: its 403, whatever the body, is a wrong key.
    let activecampaign = find("activecampaign").unwrap();
    let forbidden = serde_json::json!({"message": "Forbidden"});
    assert!(activecampaign.rejects_credentials(403, &forbidden));
    assert!(activecampaign.rejects_credentials(403, &null));
    // Elsewhere a 403 is valid credentials refused some data (scopes, permissions, another location).
    for id in [
        "stripe",
        "hubspot",
        "shopify",
        "google",
        "gohighlevel",
        "quickbooks",
        "zendesk",
    ] {
        assert!(
            !find(id).unwrap().rejects_credentials(403, &forbidden),
            "{id}"
        );
    }
}

#[test]
fn an_account_host_fills_every_placeholder_of_its_oauth_urls() {
    for platform in CATALOG {
        let Some(oauth) = platform.oauth else {
            continue;
        };
        for url in [oauth.authorize_url, oauth.token_url] {
            let placeholders: Vec<&str> = url_placeholders(url).collect();
            let host = oauth.account_host.map(|h| h.field);
            assert!(
                placeholders.iter().all(|p| Some(*p) == host),
                "{}: {url} needs {placeholders:?}, the flow knows {host:?}",
                platform.id
            );
        }
    }
    let zendesk = find("zendesk").unwrap();
    assert!(zendesk.supports(AuthType::Oauth2) && zendesk.supports(AuthType::ApiKey));
    let host = zendesk.oauth.unwrap().account_host.unwrap();
    assert_eq!(host.field, "subdomain");
    assert_eq!(
        host.parse(" Acme-Support ").as_deref(),
        Some("acme-support")
    );
    for bad in ["", "acme.evil.example", "acme/x", "-acme", "acme:8080"] {
        assert_eq!(host.parse(bad), None, "{bad}");
    }
    let shop = find("shopify")
        .unwrap()
        .oauth
        .unwrap()
        .account_host
        .unwrap();
    assert_eq!(
        shop.parse("Acme.myshopify.com").as_deref(),
        Some("acme.myshopify.com")
    );
    assert_eq!(shop.parse("acme.example"), None);
}

#[test]
fn a_status_only_error_match_ignores_the_body() {
    let any = ErrorMatch::status(403);
    assert!(any.matches(403, &serde_json::Value::Null));
    assert!(any.matches(403, &serde_json::json!({"message": "Forbidden"})));
    assert!(!any.matches(401, &serde_json::Value::Null));
}

#[test]
fn a_drive_backup_never_asks_for_gmail() {
    let google = find("google").unwrap();
    for scope in google.scopes_for(None) {
        assert!(!scope.contains("gmail"), "{scope}");
    }
    assert!(google
        .data_types
        .iter()
        .all(|d| !d.name.starts_with("gmail")));
    // Permissions and revisions need only the metadata scope, not the files' contents.
    let metadata = google.scopes_for(Some(&["permissions", "revisions"]));
    assert!(metadata.contains(&"https://www.googleapis.com/auth/drive.metadata.readonly"));
    assert!(!metadata.contains(&"https://www.googleapis.com/auth/drive.readonly"));
    let files = google.scopes_for(Some(&["files"]));
    assert!(files.contains(&"https://www.googleapis.com/auth/drive.readonly"));
    let dropbox = find("dropbox").unwrap();
    assert_eq!(
        dropbox.scopes_for(Some(&["shared_links"])),
        ["account_info.read", "sharing.read"]
    );
}

#[test]
fn scopes_follow_the_data_types() {
    let hubspot = find("hubspot").unwrap();
    assert_eq!(hubspot.scopes_for(Some(&[])), ["oauth"]);
    assert_eq!(
        hubspot.scopes_for(Some(&["contacts", "notes", "tickets"])),
        ["oauth", "crm.objects.contacts.read", "tickets"],
        "base first, each scope once"
    );
    let all = hubspot.scopes_for(None);
    assert!(all.contains(&"sales-email-read") && all.contains(&"e-commerce"));
    let granted = vec!["oauth".to_owned(), "crm.objects.contacts.read".to_owned()];
    let wanted = vec!["contacts".to_owned(), "deals".to_owned()];
    assert_eq!(
        hubspot.ungranted(&granted, &wanted),
        [("deals", "crm.objects.deals.read")]
    );
}

#[test]
fn every_oauth_data_type_scope_is_asked_for_somewhere() {
    for p in CATALOG.iter().filter(|p| p.oauth.is_some()) {
        for d in p.data_types {
            for scope in d.scopes {
                assert!(!scope.is_empty(), "{}/{}", p.id, d.name);
            }
        }
    }
}

#[test]
fn every_platform_of_the_registry_backs_up_every_data_type() {
    assert_eq!(CATALOG.len(), 12);
    for platform in CATALOG {
        assert!(!platform.data_types.is_empty(), "{}", platform.id);
        for d in platform.data_types {
            assert!(d.can_back_up(), "{}/{}", platform.id, d.name);
        }
    }
}

/// (platform, a parent data type's scope for reading contents, the lesser scope that lists the parent all the
/// same or `None` when its other scopes do).
const LISTING_SCOPES: &[(&str, &str, Option<&str>)] = &[
    // Drive API reference, `files.list`: `drive.metadata.readonly` is among the scopes it accepts.
    (
        "google",
        "https://www.googleapis.com/auth/drive.readonly",
        Some("https://www.googleapis.com/auth/drive.metadata.readonly"),
    ),
    // Dropbox HTTP API, `files/list_folder`: "Required scope: files.metadata.read".
    ("dropbox", "files.content.read", None),
];

#[test]
fn every_file_write_is_well_formed() {
    use super::writes::fill_template;
    let mut declared = 0;
    for platform in CATALOG {
        for data_type in platform.data_types {
            let Some(files) = data_type.file_writes else {
                continue;
            };
            declared += 1;
            let at = format!("{}.{}", platform.id, data_type.name);
            // A data type whose files are restored is one whose bytes are backed up.
            assert!(
                data_type.listing.is_some_and(|l| l.content.is_some()),
                "{at}: files are restored from their backed-up bytes"
            );
            assert!(data_type.writes.is_none(), "{at}: one write strategy");
            assert!(!files.scopes.is_empty(), "{at}: writes need a scope");
            let values = [("name", "n"), ("parent", "p"), ("mimeType", "m")];
            for template in [files.create_folder.body, files.upload.metadata] {
                let filled = fill_template(template, &values)
                    .unwrap_or_else(|err| panic!("{at}: {template}: {err}"));
                assert!(filled.to_string().contains('n'), "{at}: {template}");
            }
            for (path, host) in [
                (files.create_folder.path, files.create_folder.host),
                (files.upload.path, files.upload.host),
            ] {
                assert!(path.starts_with('/'), "{at}: {path}");
                if let ContentHost::Other { name, url } = host {
                    assert!(url.starts_with("https://") && !url.ends_with('/'), "{at}");
                    assert!(
                        name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
                        "{at}: {name} names an environment variable"
                    );
                }
            }
            assert!(files.upload.max_bytes > 0, "{at}");
            assert!(
                files.name.starts_with('/') && !files.folder.is_empty(),
                "{at}"
            );
        }
    }
    assert!(declared >= 1);
}

#[test]
fn every_set_field_is_well_formed() {
    let mut declared = 0;
    for platform in CATALOG {
        for data_type in platform.data_types {
            let Some(writes) = data_type.writes else {
                continue;
            };
            for set in writes.set_fields {
                declared += 1;
                let at = format!("{}.{}.{}", platform.id, data_type.name, set.field);
                assert!(
                    !writes.create_fields.contains(&set.field)
                        && !writes.update_fields.contains(&set.field),
                    "{at}: the follow-up writes the set, not the record's own calls"
                );
                assert!(set.name.starts_with('/'), "{at}: a JSON pointer");
                assert!(set.path.starts_with('/'), "{at}: {}", set.path);
                // Every placeholder is the record's id or one of the record's own.
                let mut rest = set.path;
                while let Some(open) = rest.find('{') {
                    let close = rest[open..].find('}').expect("a closed placeholder") + open;
                    let name = &rest[open + 1..close];
                    assert!(
                        name == "id" || writes.record_params.iter().any(|p| p.placeholder == name),
                        "{at}: {{{name}}} is filled from nothing"
                    );
                    rest = &rest[close + 1..];
                }
            }
        }
    }
    assert!(declared >= 1);
}

#[test]
fn a_mailchimp_members_tags_go_to_its_own_tags_path() {
    use super::mailchimp::{MEMBER_TAGS, MEMBER_WRITES};
    let member = serde_json::json!({"id": "62eeb292278cc15f5817cb78f7790b08", "list_id": "a1b2c3d4e5",
        "email_address": "Urist.McVankab@freddiesjokes.com", "tags": [{"id": 1, "name": "VIP"}]});
    assert_eq!(
        MEMBER_WRITES.path(MEMBER_TAGS.path, None, &member).unwrap(),
        "/lists/a1b2c3d4e5/members/62eeb292278cc15f5817cb78f7790b08/tags"
    );
    assert_eq!(MEMBER_TAGS.names(member.as_object().unwrap()), ["VIP"]);
}
