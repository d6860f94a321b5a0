//! Restores beyond Stripe (issue 13 §5), each round-tripped through its platform's emulation: back up, delete
//! two records and alter two on the platform, plan a dry run (nothing written), restore with mode overwrite,
//! back up again and compare with the snapshot (the re-created records under their new ids, as the report
//! maps them); then the same restore once more writes nothing: the records created the first time are
//! recognised by their natural key or content, which is how a platform without an idempotency key stays
//! at most once per job. Zendesk tickets come back as new tickets, and a changed one cannot be restored.
//! QuickBooks Online (OAuth only) runs through the OAuth provider emulation: there, "deleting" a customer or an
//! item is deactivating it, so the altered records are also made inactive, and their sparse updates carry
//! the `SyncToken` listed.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::support::backup::{sync_when_free, BackupApp};
use crate::support::oauth_provider::{configure_service, connect_ok, OauthProvider};

/// One platform's data type under test.
struct Case {
    platform: &'static str,
    data_type: &'static str,
    /// The connection's credentials (ListBackup's field names).
    credentials: Value,
    /// The secret the emulation accepts.
    secret: &'static str,
    /// Where a record keeps its user-set fields (HubSpot: `/properties`).
    fields_at: &'static str,
    /// The fields compared after the round trip: those the restore writes.
    compared: &'static [&'static str],
    /// What a user changes on two records (the emulation's field names).
    alter: Value,
    /// Whether an existing record that changed is put back (Zendesk tickets: never).
    updates: bool,
    /// Connected through the OAuth flow (the provider emulation forwards the data calls with `secret`)
    /// rather than with `credentials`.
    oauth: bool,
}

const ZENDESK_EMAIL: &str = "ops@acme.test";

fn cases() -> Vec<Case> {
    vec![
        Case {
            platform: "hubspot",
            data_type: "contacts",
            credentials: json!({"accessToken": "pat-na1-restore"}),
            secret: "pat-na1-restore",
            fields_at: "/properties",
            compared: &["email", "firstname", "lastname", "phone"],
            alter: json!({"firstname": "Someone", "phone": "555-0199"}),
            updates: true,
            oauth: false,
        },
        Case {
            platform: "hubspot",
            data_type: "companies",
            credentials: json!({"accessToken": "pat-na1-restore"}),
            secret: "pat-na1-restore",
            fields_at: "/properties",
            compared: &["name", "domain", "industry"],
            alter: json!({"name": "Renamed Inc", "industry": "COMPUTER_SOFTWARE"}),
            updates: true,
            oauth: false,
        },
        Case {
            platform: "hubspot",
            data_type: "deals",
            credentials: json!({"accessToken": "pat-na1-restore"}),
            secret: "pat-na1-restore",
            fields_at: "/properties",
            compared: &["dealname", "amount", "dealstage", "pipeline"],
            alter: json!({"amount": "999999", "dealstage": "closedlost"}),
            updates: true,
            oauth: false,
        },
        Case {
            platform: "keap",
            data_type: "contacts",
            credentials: json!({"apiKey": "KeapAK-restore"}),
            secret: "KeapAK-restore",
            fields_at: "",
            compared: &[
                "given_name",
                "family_name",
                "email_addresses",
                "phone_numbers",
                "job_title",
            ],
            alter: json!({"given_name": "Someone", "job_title": "Boss"}),
            updates: true,
            oauth: false,
        },
        Case {
            platform: "shopify",
            data_type: "customers",
            credentials: json!({"shop": "emulated-store.myshopify.com",
                                "adminApiAccessToken": "shpat_restore"}),
            secret: "shpat_restore",
            fields_at: "",
            compared: &["first_name", "last_name", "email", "tags", "note"],
            alter: json!({"last_name": "Changed", "note": "VIP"}),
            updates: true,
            oauth: false,
        },
        Case {
            platform: "shopify",
            data_type: "products",
            credentials: json!({"shop": "emulated-store.myshopify.com",
                                "adminApiAccessToken": "shpat_restore"}),
            secret: "shpat_restore",
            fields_at: "",
            compared: &["title", "handle", "vendor"],
            alter: json!({"title": "Renamed product", "vendor": "Someone"}),
            updates: true,
            oauth: false,
        },
        Case {
            platform: "activecampaign",
            data_type: "contacts",
            credentials: json!({"apiUrl": "https://emulated.api-us1.com",
                                "apiKey": "ac-restore-key"}),
            secret: "ac-restore-key",
            fields_at: "",
            compared: &["email", "firstName", "lastName", "phone"],
            alter: json!({"firstName": "Someone", "phone": "555-0100"}),
            updates: true,
            oauth: false,
        },
        Case {
            platform: "zendesk",
            data_type: "tickets",
            credentials: json!({"subdomain": "acme", "email": ZENDESK_EMAIL,
                                "apiToken": "zd-restore-token"}),
            secret: "zd-restore-token",
            fields_at: "",
            compared: &["subject", "description", "priority", "tags", "requester_id"],
            alter: json!({"subject": "Changed since", "priority": "urgent"}),
            updates: false,
            oauth: false,
        },
        Case {
            platform: "quickbooks",
            data_type: "customers",
            credentials: json!({}),
            secret: QUICKBOOKS_SECRET,
            fields_at: "",
            compared: &[
                "DisplayName",
                "GivenName",
                "FamilyName",
                "PrimaryEmailAddr",
                "Active",
            ],
            alter: json!({"GivenName": "Someone", "Active": false}),
            updates: true,
            oauth: true,
        },
        Case {
            platform: "quickbooks",
            data_type: "items",
            credentials: json!({}),
            secret: QUICKBOOKS_SECRET,
            fields_at: "",
            compared: &["Name", "Type", "UnitPrice", "IncomeAccountRef", "Active"],
            alter: json!({"UnitPrice": 1, "Active": false}),
            updates: true,
            oauth: true,
        },
    ]
}

const QUICKBOOKS_SECRET: &str = "quickbooks-data-plane-secret";

/// The service and the emulation for `case`, and the OAuth provider emulation its connection goes through
/// (kept alive as long as the test).
async fn spawn(case: &Case) -> (BackupApp, Option<OauthProvider>) {
    let key = format!(
        "LISTBACKUP_PLATFORM_{}_RATE_LIMIT",
        case.platform.to_ascii_uppercase()
    );
    let (backup, provider) = if case.oauth {
        let provider = OauthProvider::start().await;
        let backup = BackupApp::spawn_with(|values| {
            configure_service(&provider, values);
            values.insert(key, "unlimited".into());
        })
        .await;
        provider.serve_data(
            case.platform,
            &backup.api.api_url(case.platform),
            case.secret,
        );
        (backup, Some(provider))
    } else {
        let backup = BackupApp::spawn_emulating(&[case.platform], |values| {
            values.insert(key, "unlimited".into());
        })
        .await;
        (backup, None)
    };
    backup.api.lift_rate_limits();
    (backup, provider)
}

/// A connection and a source backing `case.data_type` up in full each time; the source's id.
async fn source(backup: &BackupApp, token: &str, case: &Case) -> String {
    let app = &backup.app;
    let connection = if case.oauth {
        connect_ok(app, token, case.platform, json!({})).await
    } else {
        let response = app
            .post(
                "/connections",
                token,
                &json!({"platformId": case.platform, "name": case.platform,
                        "credentials": case.credentials}),
            )
            .await;
        assert_eq!(response.status(), 201, "{}", case.platform);
        response.json().await.unwrap()
    };
    let response = app
        .post(
            "/sources",
            token,
            &json!({"connectionId": connection["connectionId"], "name": case.data_type,
                    "dataTypes": [case.data_type], "incremental": false}),
        )
        .await;
    assert_eq!(response.status(), 201, "{}", case.platform);
    let source: Value = response.json().await.unwrap();
    source["sourceId"].as_str().unwrap().to_owned()
}

/// Backs the source up to success; the job id.
async fn back_up(backup: &BackupApp, token: &str, source_id: &str) -> String {
    let job_id = sync_when_free(&backup.app, token, source_id).await;
    let job = backup.finished(token, &job_id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    job_id
}

/// Runs a restore to its end (requested once the source is free); the finished job.
async fn restore(backup: &BackupApp, token: &str, source_id: &str, body: Value) -> Value {
    backup.restore_to_end(token, source_id, &body).await
}

/// A record's id: `id`, or QuickBooks' `Id`.
fn id_of(record: &Value) -> String {
    let id = record.get("id").unwrap_or(&record["Id"]);
    match id {
        Value::String(id) => id.clone(),
        Value::Number(id) => id.to_string(),
        other => panic!("no id: {other}"),
    }
}

/// Each record's compared fields (a `null` and an absent field alike), by id.
fn by_id(case: &Case, records: &[Value]) -> HashMap<String, Value> {
    records
        .iter()
        .map(|r| {
            let fields = r.pointer(case.fields_at).unwrap_or(&Value::Null);
            let compared: serde_json::Map<String, Value> = case
                .compared
                .iter()
                .filter_map(|f| {
                    let value = fields.get(*f).filter(|v| !v.is_null())?;
                    Some(((*f).to_owned(), value.clone()))
                })
                .collect();
            (id_of(r), Value::Object(compared))
        })
        .collect()
}

fn counts(done: &Value) -> (u64, u64, u64, u64) {
    let restore = &done["restore"];
    let n = |k: &str| restore[k].as_u64().unwrap_or_else(|| panic!("{k}: {done}"));
    (n("created"), n("updated"), n("skipped"), n("failed"))
}

async fn round_trip(case: Case) {
    const SEEDED: u64 = 12;
    let (backup, _provider) = spawn(&case).await;
    if case.platform == "zendesk" {
        backup.api.accept_credentials(
            "zendesk",
            json!({"email": ZENDESK_EMAIL, "apiToken": case.secret}),
        );
    } else {
        backup.api.accept(case.platform, case.secret);
    }
    backup.api.seed(case.platform, case.data_type, SEEDED);
    let token = backup.app.owner("acme");
    let source_id = source(&backup, &token, &case).await;
    let what = format!("{} {}", case.platform, case.data_type);

    // The catalog says the data type is writable.
    let catalog: Value = backup
        .app
        .get(&format!("/platforms/{}", case.platform), &token)
        .await
        .json()
        .await
        .unwrap();
    let entry = catalog["dataTypes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == case.data_type)
        .unwrap()
        .clone();
    assert_eq!(entry["writable"], true, "{what}: {entry}");
    // Only what works says so: every other data type of the platform is not writable.
    let writable: Vec<&str> = catalog["dataTypes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["writable"] == true)
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    let expected: &[&str] = match case.platform {
        "hubspot" => &["contacts", "companies", "deals"],
        "shopify" => &["customers", "products"],
        "zendesk" => &["tickets"],
        "quickbooks" => &["customers", "items"],
        _ => &["contacts"],
    };
    assert_eq!(writable, expected, "{what}");

    let snapshot = back_up(&backup, &token, &source_id).await;
    let backed_up = backup.stored("acme", &source_id, &snapshot, case.data_type);
    assert_eq!(backed_up.len() as u64, SEEDED, "{what}");
    let then = by_id(&case, &backed_up);
    let ids: Vec<String> = backed_up.iter().map(id_of).collect();

    // Two records deleted, two altered on the platform.
    backup.api.delete(case.platform, case.data_type, [0, 1]);
    for index in [2, 3] {
        backup
            .api
            .alter(case.platform, case.data_type, index, case.alter.clone());
    }
    let listed = |backup: &BackupApp| backup.api.listing_ids(case.platform, case.data_type).len();
    assert_eq!(listed(&backup), SEEDED as usize - 2);

    // A dry run plans it and writes nothing.
    let body = |dry_run: bool| {
        json!({"snapshot": snapshot, "dataTypes": [case.data_type], "mode": "overwrite",
               "dryRun": dry_run})
    };
    let dry = restore(&backup, &token, &source_id, body(true)).await;
    let expected_changed = if case.updates { (2, 0) } else { (0, 2) };
    assert_eq!(
        counts(&dry),
        (2, expected_changed.0, SEEDED - 4, expected_changed.1),
        "{what}: {dry}"
    );
    assert_eq!(
        listed(&backup),
        SEEDED as usize - 2,
        "{what}: the dry run wrote"
    );
    let plan = backup
        .restore_report(&token, dry["jobId"].as_str().unwrap())
        .await;
    let line = |lines: &[Value], id: &str| {
        lines
            .iter()
            .find(|l| l["oldId"] == id)
            .unwrap_or_else(|| panic!("{id}"))
            .clone()
    };
    assert_eq!(line(&plan, &ids[0])["action"], "create", "{what}");
    let changed = line(&plan, &ids[2]);
    if case.updates {
        assert_eq!(changed["action"], "update", "{what}");
    } else {
        assert_eq!(changed["action"], "cannot_restore", "{what}: {changed}");
        assert!(changed["reason"].as_str().is_some(), "{what}: {changed}");
    }

    // The real run: the deleted records created again under new ids, the altered ones put back.
    let done = restore(&backup, &token, &source_id, body(false)).await;
    assert_eq!(
        counts(&done),
        (2, expected_changed.0, SEEDED - 4, expected_changed.1),
        "{what}: {done}"
    );
    let lines = backup
        .restore_report(&token, done["jobId"].as_str().unwrap())
        .await;
    let mut new_ids = HashMap::new();
    for id in &ids[..2] {
        let new_id = line(&lines, id)["newId"]
            .as_str()
            .unwrap_or_else(|| panic!("{what} {id}: no new id"))
            .to_owned();
        assert_ne!(&new_id, id, "{what}: the platform chooses a new id");
        new_ids.insert(id.clone(), new_id);
    }
    assert_eq!(listed(&backup), SEEDED as usize, "{what}");

    // Backed up again, the data equals the snapshot (a changed ticket stays as it is now).
    let again = back_up(&backup, &token, &source_id).await;
    let now = by_id(
        &case,
        &backup.stored("acme", &source_id, &again, case.data_type),
    );
    assert_eq!(now.len() as u64, SEEDED, "{what}");
    for (id, fields) in &then {
        let current = new_ids.get(id).unwrap_or(id);
        if !case.updates && (*id == ids[2] || *id == ids[3]) {
            assert_ne!(now.get(current), Some(fields), "{what} {id}");
            continue;
        }
        assert_eq!(
            now.get(current),
            Some(fields),
            "{what} {id} (now {current})"
        );
    }

    // The same restore again (as the next attempt of a job whose worker died would) creates nothing twice:
    // the records created above are recognised under their new ids.
    let repeat = restore(&backup, &token, &source_id, body(false)).await;
    assert_eq!(
        counts(&repeat),
        (0, 0, SEEDED - expected_changed.1, expected_changed.1),
        "{what}: {repeat}"
    );
    let lines = backup
        .restore_report(&token, repeat["jobId"].as_str().unwrap())
        .await;
    for id in &ids[..2] {
        assert_eq!(
            line(&lines, id)["newId"].as_str(),
            Some(new_ids[id].as_str()),
            "{what} {id}"
        );
    }
    assert_eq!(
        listed(&backup),
        SEEDED as usize,
        "{what}: a duplicate was created"
    );
    backup.stop().await;
}

#[tokio::test]
async fn hubspot_contacts_round_trip() {
    round_trip(cases().remove(0)).await;
}

#[tokio::test]
async fn hubspot_companies_round_trip() {
    round_trip(cases().remove(1)).await;
}

#[tokio::test]
async fn hubspot_deals_round_trip() {
    round_trip(cases().remove(2)).await;
}

#[tokio::test]
async fn keap_contacts_round_trip() {
    round_trip(cases().remove(3)).await;
}

#[tokio::test]
async fn shopify_customers_round_trip() {
    round_trip(cases().remove(4)).await;
}

#[tokio::test]
async fn shopify_products_round_trip() {
    round_trip(cases().remove(5)).await;
}

#[tokio::test]
async fn activecampaign_contacts_round_trip() {
    round_trip(cases().remove(6)).await;
}

#[tokio::test]
async fn zendesk_tickets_come_back_as_new_tickets() {
    round_trip(cases().remove(7)).await;
}

#[tokio::test]
async fn quickbooks_customers_round_trip() {
    round_trip(cases().remove(8)).await;
}

#[tokio::test]
async fn quickbooks_items_round_trip() {
    round_trip(cases().remove(9)).await;
}

#[tokio::test]
async fn a_record_the_platform_refuses_is_reported_and_the_restore_goes_on() {
    let case = cases().remove(7);
    let (backup, _) = spawn(&case).await;
    backup.api.accept_credentials(
        "zendesk",
        json!({"email": ZENDESK_EMAIL, "apiToken": case.secret}),
    );
    backup.api.seed("zendesk", "tickets", 4);
    // A ticket whose description is empty when backed up: Zendesk refuses a new ticket without one (422).
    backup
        .api
        .alter("zendesk", "tickets", 0, json!({"description": ""}));
    let token = backup.app.owner("acme");
    let source_id = source(&backup, &token, &case).await;
    let snapshot = back_up(&backup, &token, &source_id).await;
    assert_eq!(
        backup
            .stored("acme", &source_id, &snapshot, "tickets")
            .len(),
        4
    );
    let ids: Vec<String> = (0..2)
        .map(|i| backup.api.id_of("zendesk", "tickets", i))
        .collect();
    backup.api.delete("zendesk", "tickets", [0, 1]);

    let done = restore(
        &backup,
        &token,
        &source_id,
        json!({"snapshot": snapshot, "dataTypes": ["tickets"], "mode": "missing", "dryRun": false}),
    )
    .await;
    assert_eq!(counts(&done), (1, 0, 2, 1), "{done}");
    let lines = backup
        .restore_report(&token, done["jobId"].as_str().unwrap())
        .await;
    let refused = lines
        .iter()
        .find(|l| l["oldId"] == ids[0].as_str())
        .unwrap();
    assert_eq!(refused["action"], "cannot_restore", "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("422") || e.contains("Description")),
        "the platform's refusal is in the report: {refused}"
    );
    assert!(refused["newId"].is_null(), "{refused}");
    let created = lines
        .iter()
        .find(|l| l["oldId"] == ids[1].as_str())
        .unwrap();
    assert_eq!(created["action"], "create", "{created}");
    assert_eq!(backup.api.listing_ids("zendesk", "tickets").len(), 3);
    backup.stop().await;
}

/// An OAuth connection asks for read scopes only unless told otherwise: a restore through one that was not
/// granted its data types' write scopes (the catalog's `writeScopes`) is refused at request time, naming them
/// and the way out; a dry run, which only reads, goes through. Reconnected with `writeAccess`, the
/// authorization asks for them and the restore runs.
#[tokio::test]
async fn a_restore_through_a_read_only_oauth_connection_is_refused_until_write_access_is_granted() {
    const SECRET: &str = "hubspot-data-plane-secret";
    let provider = OauthProvider::start().await;
    let backup = BackupApp::spawn_with(|values| {
        configure_service(&provider, values);
        values.insert(
            "LISTBACKUP_PLATFORM_HUBSPOT_RATE_LIMIT".into(),
            "unlimited".into(),
        );
    })
    .await;
    provider.serve_data("hubspot", &backup.api.api_url("hubspot"), SECRET);
    backup.api.accept("hubspot", SECRET);
    backup.api.lift_rate_limits();
    backup.api.seed("hubspot", "contacts", 3);
    let token = backup.app.owner("acme");

    // The catalog says what a restore of contacts needs.
    let catalog: Value = backup
        .app
        .get("/platforms/hubspot", &token)
        .await
        .json()
        .await
        .unwrap();
    let contacts = catalog["dataTypes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "contacts")
        .unwrap();
    assert_eq!(
        contacts["writeScopes"],
        json!(["crm.objects.contacts.write"]),
        "{contacts}"
    );

    let connection = connect_ok(
        &backup.app,
        &token,
        "hubspot",
        json!({"dataTypes": ["contacts"]}),
    )
    .await;
    let connection_id = connection["connectionId"].as_str().unwrap().to_owned();
    let response = backup
        .app
        .post(
            "/sources",
            &token,
            &json!({"connectionId": connection_id, "name": "CRM", "dataTypes": ["contacts"],
                    "incremental": false}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let source: Value = response.json().await.unwrap();
    let source_id = source["sourceId"].as_str().unwrap().to_owned();
    let snapshot = back_up(&backup, &token, &source_id).await;
    backup.api.delete("hubspot", "contacts", [0]);
    let body = |dry_run: bool| json!({"snapshot": snapshot, "dataTypes": ["contacts"], "mode": "missing", "dryRun": dry_run});

    // Refused at request time: 422 naming the scope and how to get it; nothing is queued.
    let response = backup
        .app
        .post(
            &format!("/sources/{source_id}/restores"),
            &token,
            &body(false),
        )
        .await;
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "dataTypes", "{problem}");
    let message = problem["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("crm.objects.contacts.write")
            && message.contains(&format!("/connections/{connection_id}/reconnect"))
            && message.contains("writeAccess"),
        "{problem}"
    );
    // A dry run only reads: it plans the missing contact.
    let dry = restore(&backup, &token, &source_id, body(true)).await;
    assert_eq!(counts(&dry), (1, 0, 2, 0), "{dry}");
    assert_eq!(backup.api.listing_ids("hubspot", "contacts").len(), 2);

    // Reconnected with write access: the authorization asks for the write scope too, and it is granted.
    let response = backup
        .app
        .post(
            &format!("/connections/{connection_id}/reconnect"),
            &token,
            &json!({"writeAccess": true}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let again: Value = response.json().await.unwrap();
    let url = again["authorizationUrl"].as_str().unwrap();
    let asked: String = url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "scope")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    assert!(
        asked.split(' ').any(|s| s == "crm.objects.contacts.write"),
        "{asked}"
    );
    assert!(
        asked.split(' ').any(|s| s == "crm.objects.contacts.read"),
        "what was granted is kept: {asked}"
    );
    let redirect = crate::support::oauth_provider::consent(url).await;
    let response = crate::support::oauth_provider::deliver(&backup.app, &redirect).await;
    assert!(response.status().is_success(), "{}", response.status());

    let done = restore(&backup, &token, &source_id, body(false)).await;
    assert_eq!(counts(&done), (1, 0, 2, 0), "{done}");
    assert_eq!(backup.api.listing_ids("hubspot", "contacts").len(), 3);
    backup.stop().await;
}

// ---------------------------------------------------------------------------------------------------------
// Mailchimp audience members: children of their audience, keyed `<list_id>/<id>` (a member's id is the MD5
// of its e-mail address, the same in every audience), written with an upsert that never changes a status.

const MAILCHIMP_KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0-us21";

/// The fields of a member a restore puts back, and its status (which it never changes).
const MEMBER_FIELDS: &[&str] = &[
    "email_address",
    "status",
    "email_type",
    "merge_fields",
    "language",
    "vip",
];

/// The service and the Mailchimp emulation with audiences holding `members[k]` members each (the same
/// addresses `member0@…`, `member1@…` in every audience); a source backing members up in full each time;
/// the first backup. (backup, owner token, source id, audience ids, snapshot job id)
async fn mailchimp(members: &[u64]) -> (BackupApp, String, String, Vec<String>, String) {
    let backup = BackupApp::spawn_emulating(&["mailchimp"], |values| {
        values.insert(
            "LISTBACKUP_PLATFORM_MAILCHIMP_RATE_LIMIT".into(),
            "unlimited".into(),
        );
    })
    .await;
    backup.api.lift_rate_limits();
    backup.api.accept("mailchimp", MAILCHIMP_KEY);
    backup
        .api
        .seed("mailchimp", "audiences", members.len() as u64);
    let lists: Vec<String> = (0..members.len() as u64)
        .map(|i| backup.api.id_of("mailchimp", "audiences", i))
        .collect();
    for (list, n) in lists.iter().zip(members) {
        backup
            .api
            .seed("mailchimp", &format!("audience_members/{list}"), *n);
    }
    let token = backup.app.owner("acme");
    let response = backup
        .app
        .post(
            "/connections",
            &token,
            &json!({"platformId": "mailchimp", "name": "Newsletters",
                    "credentials": {"apiKey": MAILCHIMP_KEY}}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let connection: Value = response.json().await.unwrap();
    let response = backup
        .app
        .post(
            "/sources",
            &token,
            &json!({"connectionId": connection["connectionId"], "name": "Members",
                    "dataTypes": ["audience_members"], "incremental": false}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let source_id = response.json::<Value>().await.unwrap()["sourceId"]
        .as_str()
        .unwrap()
        .to_owned();
    let snapshot = back_up(&backup, &token, &source_id).await;
    (backup, token, source_id, lists, snapshot)
}

/// Member `index`'s id (its subscriber hash): the same in every audience.
fn member_id(backup: &BackupApp, list: &str, index: u64) -> String {
    backup
        .api
        .id_of("mailchimp", &format!("audience_members/{list}"), index)
}

/// A call to the Mailchimp emulation as a user's own tools would make it: (status, body or null).
async fn mailchimp_call(
    backup: &BackupApp,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", backup.api.api_url("mailchimp")))
        .basic_auth("anystring", Some(MAILCHIMP_KEY));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The members of a backup by key `<list_id>/<id>`, their restored fields only.
fn members_by_key(records: &[Value]) -> HashMap<String, Value> {
    records
        .iter()
        .map(|r| {
            let key = format!(
                "{}/{}",
                r["list_id"].as_str().unwrap(),
                r["id"].as_str().unwrap()
            );
            let fields: serde_json::Map<String, Value> = MEMBER_FIELDS
                .iter()
                .filter_map(|f| Some(((*f).to_owned(), r.get(*f)?.clone())))
                .collect();
            (key, Value::Object(fields))
        })
        .collect()
}

fn line_of(lines: &[Value], old_id: &str) -> Value {
    lines
        .iter()
        .find(|l| l["oldId"] == old_id)
        .unwrap_or_else(|| panic!("no report line for {old_id}: {lines:?}"))
        .clone()
}

#[tokio::test]
async fn mailchimp_audience_members_round_trip() {
    let (backup, token, source_id, lists, snapshot) = mailchimp(&[4, 4]).await;
    let (a, b) = (&lists[0], &lists[1]);
    let then = members_by_key(&backup.stored("acme", &source_id, &snapshot, "audience_members"));
    assert_eq!(then.len(), 8, "the same four addresses in two audiences");

    // The catalog says members are writable, and nothing else of Mailchimp is.
    let catalog: Value = backup
        .app
        .get("/platforms/mailchimp", &token)
        .await
        .json()
        .await
        .unwrap();
    let writable: Vec<&str> = catalog["dataTypes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["writable"] == true)
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(writable, ["audience_members"]);

    // Member 0 archived in audience A only (it stays in B); member 1 of B renamed (A's is untouched).
    let id0 = member_id(&backup, a, 0);
    let id1 = member_id(&backup, b, 1);
    assert_eq!(id0, member_id(&backup, b, 0), "one id in both audiences");
    let (status, _) = mailchimp_call(
        &backup,
        reqwest::Method::DELETE,
        &format!("/lists/{a}/members/{id0}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, changed) = mailchimp_call(
        &backup,
        reqwest::Method::PATCH,
        &format!("/lists/{b}/members/{id1}"),
        Some(json!({"merge_fields": {"FNAME": "Renamed"}, "vip": true})),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    let listed = |list: &str| {
        backup
            .api
            .listing_ids("mailchimp", &format!("audience_members/{list}"))
            .len()
    };
    assert_eq!((listed(a), listed(b)), (3, 4));

    let body = |dry_run: bool| {
        json!({"snapshot": snapshot, "dataTypes": ["audience_members"], "mode": "overwrite",
               "dryRun": dry_run})
    };
    let dry = restore(&backup, &token, &source_id, body(true)).await;
    assert_eq!(counts(&dry), (1, 1, 6, 0), "{dry}");
    assert_eq!((listed(a), listed(b)), (3, 4), "the dry run wrote");
    let plan = backup
        .restore_report(&token, dry["jobId"].as_str().unwrap())
        .await;
    assert_eq!(line_of(&plan, &format!("{a}/{id0}"))["action"], "create");
    assert_eq!(line_of(&plan, &format!("{b}/{id0}"))["action"], "skip");
    assert_eq!(line_of(&plan, &format!("{b}/{id1}"))["action"], "update");
    assert_eq!(line_of(&plan, &format!("{a}/{id1}"))["action"], "skip");

    let done = restore(&backup, &token, &source_id, body(false)).await;
    assert_eq!(counts(&done), (1, 1, 6, 0), "{done}");
    let lines = backup
        .restore_report(&token, done["jobId"].as_str().unwrap())
        .await;
    let created = line_of(&lines, &format!("{a}/{id0}"));
    assert_eq!(created["action"], "create", "{created}");
    assert_eq!(
        created["newId"],
        format!("{a}/{id0}"),
        "the upsert brings the archived member back under its own key: {created}"
    );
    assert_eq!(
        line_of(&lines, &format!("{b}/{id1}"))["newId"],
        format!("{b}/{id1}")
    );
    assert_eq!((listed(a), listed(b)), (4, 4));

    // Backed up again, every member of both audiences is as in the snapshot.
    let again = back_up(&backup, &token, &source_id).await;
    let now = members_by_key(&backup.stored("acme", &source_id, &again, "audience_members"));
    assert_eq!(now, then);

    // The same restore again changes nothing.
    let repeat = restore(&backup, &token, &source_id, body(false)).await;
    assert_eq!(counts(&repeat), (0, 0, 8, 0), "{repeat}");
    assert_eq!((listed(a), listed(b)), (4, 4));
    backup.stop().await;
}

#[tokio::test]
async fn a_mailchimp_member_unsubscribed_since_the_backup_stays_unsubscribed() {
    let (backup, token, source_id, lists, snapshot) = mailchimp(&[3]).await;
    let list = &lists[0];
    let ids: Vec<String> = (0..3).map(|i| member_id(&backup, list, i)).collect();
    let call = |method, index: usize, body: Option<Value>| {
        let path = format!("/lists/{list}/members/{}", ids[index]);
        let backup = &backup;
        async move { mailchimp_call(backup, method, &path, body).await }
    };
    // Member 0 unsubscribed and renamed; member 1 unsubscribed, then archived; member 2 unsubscribed only.
    let (status, body) = call(
        reqwest::Method::PATCH,
        0,
        Some(json!({"status": "unsubscribed", "merge_fields": {"LNAME": "Gone"}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(
        reqwest::Method::PATCH,
        1,
        Some(json!({"status": "unsubscribed"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(call(reqwest::Method::DELETE, 1, None).await.0, 204);
    let (status, body) = call(
        reqwest::Method::PATCH,
        2,
        Some(json!({"status": "unsubscribed"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let done = restore(
        &backup,
        &token,
        &source_id,
        json!({"snapshot": snapshot, "dataTypes": ["audience_members"], "mode": "overwrite",
               "dryRun": false}),
    )
    .await;
    let lines = backup
        .restore_report(&token, done["jobId"].as_str().unwrap())
        .await;
    let key = |i: usize| format!("{list}/{}", ids[i]);
    // Member 0: its merge fields back, its status left unsubscribed.
    assert_eq!(line_of(&lines, &key(0))["action"], "update");
    let (_, member) = call(reqwest::Method::GET, 0, None).await;
    assert_eq!(member["status"], "unsubscribed", "{member}");
    assert_eq!(member["merge_fields"]["LNAME"], "0", "{member}");
    // Member 1: re-adding it as backed up (subscribed) is refused by Mailchimp's compliance rules, and
    // the restore reports it rather than forcing it: it stays archived and unsubscribed.
    let refused = line_of(&lines, &key(1));
    assert_eq!(refused["action"], "cannot_restore", "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("compliance state")),
        "{refused}"
    );
    let (_, member) = call(reqwest::Method::GET, 1, None).await;
    assert_eq!(member["status"], "archived", "{member}");
    // Member 2: only its status changed: skipped, saying why.
    let kept = line_of(&lines, &key(2));
    assert_eq!(kept["action"], "skip", "{kept}");
    assert!(
        kept["reason"]
            .as_str()
            .is_some_and(|r| r.contains("status")),
        "{kept}"
    );
    let (_, member) = call(reqwest::Method::GET, 2, None).await;
    assert_eq!(member["status"], "unsubscribed", "{member}");
    assert_eq!(counts(&done), (0, 1, 1, 1), "{done}");
    backup.stop().await;
}

#[tokio::test]
async fn a_forgotten_mailchimp_member_is_reported_as_cannot_restore() {
    let (backup, token, source_id, lists, snapshot) = mailchimp(&[3]).await;
    let list = &lists[0];
    let ids: Vec<String> = (0..3).map(|i| member_id(&backup, list, i)).collect();
    // Member 0 deleted permanently, member 1 archived.
    let (status, _) = mailchimp_call(
        &backup,
        reqwest::Method::POST,
        &format!("/lists/{list}/members/{}/actions/delete-permanent", ids[0]),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = mailchimp_call(
        &backup,
        reqwest::Method::DELETE,
        &format!("/lists/{list}/members/{}", ids[1]),
        None,
    )
    .await;
    assert_eq!(status, 204);

    let done = restore(
        &backup,
        &token,
        &source_id,
        json!({"snapshot": snapshot, "dataTypes": ["audience_members"], "mode": "missing",
               "dryRun": false}),
    )
    .await;
    assert_eq!(counts(&done), (1, 0, 1, 1), "{done}");
    let lines = backup
        .restore_report(&token, done["jobId"].as_str().unwrap())
        .await;
    let forgotten = line_of(&lines, &format!("{list}/{}", ids[0]));
    assert_eq!(forgotten["action"], "cannot_restore", "{forgotten}");
    assert!(
        forgotten["error"]
            .as_str()
            .is_some_and(|e| e.contains("permanently deleted")),
        "Mailchimp's reason is in the report: {forgotten}"
    );
    assert!(forgotten["newId"].is_null(), "{forgotten}");
    assert_eq!(
        line_of(&lines, &format!("{list}/{}", ids[1]))["action"],
        "create"
    );
    let listed = backup
        .api
        .listing_ids("mailchimp", &format!("audience_members/{list}"));
    assert_eq!(listed.len(), 2, "member 1 is back, member 0 is not");
    backup.stop().await;
}

#[tokio::test]
async fn a_restore_by_record_ids_takes_parent_qualified_keys_and_reports_unknown_ids() {
    // Audience A holds members 0, 1, 2; audience B members 0, 1 (the same addresses).
    let (backup, token, source_id, lists, snapshot) = mailchimp(&[3, 2]).await;
    let (a, b) = (&lists[0], &lists[1]);
    let id0 = member_id(&backup, a, 0);
    let id2 = member_id(&backup, a, 2);
    // Every member archived.
    for (list, n) in [(a, 3), (b, 2)] {
        for i in 0..n {
            let id = member_id(&backup, list, i);
            let (status, _) = mailchimp_call(
                &backup,
                reqwest::Method::DELETE,
                &format!("/lists/{list}/members/{id}"),
                None,
            )
            .await;
            assert_eq!(status, 204);
        }
    }
    // A's member 0 by its key; member 2 by its plain id (in A only); member 0's plain id, which names a
    // member of A and one of B; an id the snapshot does not hold.
    let asked = [
        format!("{a}/{id0}"),
        id2.clone(),
        id0.clone(),
        "0123456789abcdef0123456789abcdef".to_owned(),
    ];
    let done = restore(
        &backup,
        &token,
        &source_id,
        json!({"snapshot": snapshot, "dataTypes": ["audience_members"], "mode": "missing",
               "dryRun": false, "recordIds": asked}),
    )
    .await;
    assert_eq!(counts(&done), (2, 0, 0, 2), "{done}");
    let lines = backup
        .restore_report(&token, done["jobId"].as_str().unwrap())
        .await;
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(line_of(&lines, &format!("{a}/{id0}"))["action"], "create");
    assert_eq!(line_of(&lines, &format!("{a}/{id2}"))["action"], "create");
    let ambiguous = line_of(&lines, &id0);
    assert_eq!(ambiguous["action"], "cannot_restore", "{ambiguous}");
    assert!(
        ambiguous["reason"]
            .as_str()
            .is_some_and(|r| r.contains(&format!("{b}/{id0}")) && r.contains("key")),
        "{ambiguous}"
    );
    let unknown = line_of(&lines, "0123456789abcdef0123456789abcdef");
    assert_eq!(unknown["action"], "cannot_restore", "{unknown}");
    assert!(
        unknown["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not in the snapshot")),
        "{unknown}"
    );
    let listed = |list: &str| {
        backup
            .api
            .listing_ids("mailchimp", &format!("audience_members/{list}"))
            .len()
    };
    assert_eq!(
        (listed(a), listed(b)),
        (2, 0),
        "only the two named members came back"
    );
    backup.stop().await;
}

/// The tag names of member `<list>/<id>` among a backup's records, sorted (each tag checked to be `{id, name}`).
fn tags_in(records: &[Value], list: &str, id: &str) -> Vec<String> {
    let member = records
        .iter()
        .find(|r| r["list_id"] == list && r["id"] == id)
        .unwrap_or_else(|| panic!("no member {list}/{id} in the backup"));
    let mut names: Vec<String> = member["tags"]
        .as_array()
        .unwrap_or_else(|| panic!("no tags: {member}"))
        .iter()
        .map(|t| {
            assert!(t["id"].is_u64(), "a tag is {{id, name}}: {t}");
            t["name"].as_str().unwrap().to_owned()
        })
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn mailchimp_member_tags_come_back_as_backed_up() {
    let (backup, token, source_id, lists, _) = mailchimp(&[4]).await;
    let list = &lists[0];
    let ids: Vec<String> = (0..4).map(|i| member_id(&backup, list, i)).collect();
    let tag = |index: usize, tags: Value| {
        let path = format!("/lists/{list}/members/{}/tags", ids[index]);
        let backup = &backup;
        async move {
            mailchimp_call(
                backup,
                reqwest::Method::POST,
                &path,
                Some(json!({ "tags": tags })),
            )
            .await
        }
    };
    let active = |name: &str| json!({"name": name, "status": "active"});
    let inactive = |name: &str| json!({"name": name, "status": "inactive"});
    // Tagged as Mailchimp documents it: 204, the tags created in the audience as they are first used.
    for (index, tags) in [
        (0, json!([active("VIP"), active("early")])),
        (1, json!([active("early")])),
        (2, json!([active("churn-risk")])),
    ] {
        let (status, body) = tag(index, tags).await;
        assert_eq!(status, 204, "{body}");
    }
    // The endpoint as documented: an unknown member is a 404, a status other than active/inactive a 400.
    let (status, _) = mailchimp_call(
        &backup,
        reqwest::Method::POST,
        &format!("/lists/{list}/members/0123456789abcdef0123456789abcdef/tags"),
        Some(json!({"tags": [active("VIP")]})),
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = tag(3, json!([{"name": "VIP", "status": "on"}])).await;
    assert_eq!(status, 400, "{body}");
    let snapshot = back_up(&backup, &token, &source_id).await;
    let then = backup.stored("acme", &source_id, &snapshot, "audience_members");
    assert_eq!(tags_in(&then, list, &ids[0]), ["VIP", "early"]);
    assert_eq!(tags_in(&then, list, &ids[1]), ["early"]);
    assert_eq!(tags_in(&then, list, &ids[3]), Vec::<String>::new());

    // Since: member 0 lost VIP and gained "new"; member 1 lost its tag and was archived; member 2 lost its
    // tag; member 3 was tagged "spam".
    for (index, tags) in [
        (0, json!([inactive("VIP"), active("new")])),
        (1, json!([inactive("early")])),
        (2, json!([inactive("churn-risk")])),
        (3, json!([active("spam")])),
    ] {
        let (status, body) = tag(index, tags).await;
        assert_eq!(status, 204, "{body}");
    }
    let (status, _) = mailchimp_call(
        &backup,
        reqwest::Method::DELETE,
        &format!("/lists/{list}/members/{}", ids[1]),
        None,
    )
    .await;
    assert_eq!(status, 204);
    // The member's own tags list as the listing does.
    let tags_now = |index: usize| {
        let path = format!("/lists/{list}/members/{}/tags", ids[index]);
        let backup = &backup;
        async move {
            let (status, body) = mailchimp_call(backup, reqwest::Method::GET, &path, None).await;
            assert_eq!(status, 200, "{body}");
            let mut names: Vec<String> = body["tags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_owned())
                .collect();
            names.sort();
            names
        }
    };
    assert_eq!(tags_now(0).await, ["early", "new"]);

    let body = |mode: &str, dry_run: bool| {
        json!({"snapshot": snapshot, "dataTypes": ["audience_members"], "mode": mode,
               "dryRun": dry_run})
    };
    let key = |index: usize| format!("{list}/{}", ids[index]);
    // Dry, in mode overwrite: member 1 created with its tag, the others' tags put back; nothing written.
    let dry = restore(&backup, &token, &source_id, body("overwrite", true)).await;
    assert_eq!(counts(&dry), (1, 3, 0, 0), "{dry}");
    let plan = backup
        .restore_report(&token, dry["jobId"].as_str().unwrap())
        .await;
    let planned = line_of(&plan, &key(0));
    assert_eq!(planned["action"], "update", "{planned}");
    assert_eq!(
        planned["sets"]["tags"],
        json!({"active": ["VIP", "early"], "inactive": ["new"]}),
        "{planned}"
    );
    let planned = line_of(&plan, &key(1));
    assert_eq!(planned["action"], "create", "{planned}");
    assert_eq!(
        planned["sets"]["tags"],
        json!({"active": ["early"], "inactive": []})
    );
    assert_eq!(
        line_of(&plan, &key(3))["sets"]["tags"],
        json!({"active": [], "inactive": ["spam"]})
    );
    assert_eq!(tags_now(0).await, ["early", "new"], "the dry run wrote");
    assert_eq!(tags_now(3).await, ["spam"], "the dry run wrote");

    // Mode missing: member 1 comes back with its tag; the others are left as they are.
    let missing = restore(&backup, &token, &source_id, body("missing", false)).await;
    assert_eq!(counts(&missing), (1, 0, 3, 0), "{missing}");
    let (_, member) = mailchimp_call(
        &backup,
        reqwest::Method::GET,
        &format!("/lists/{list}/members/{}", ids[1]),
        None,
    )
    .await;
    assert_eq!(member["status"], "subscribed", "{member}");
    assert_eq!(member["tags"][0]["name"], "early", "{member}");
    assert_eq!(member["tags_count"], 1, "{member}");
    assert_eq!(tags_now(0).await, ["early", "new"]);
    assert_eq!(tags_now(3).await, ["spam"]);

    // Mode overwrite: the other members' tags are put back (their tags the only difference). Mailchimp
    // refuses member 3's tags call: reported with its error, the rest go on.
    let refused = format!("/mailchimp/3.0/lists/{list}/members/{}/tags", ids[3]);
    backup.api.fail_path(&refused, 400);
    let done = restore(&backup, &token, &source_id, body("overwrite", false)).await;
    assert_eq!(counts(&done), (0, 2, 1, 1), "{done}");
    let lines = backup
        .restore_report(&token, done["jobId"].as_str().unwrap())
        .await;
    for index in [0, 2] {
        let line = line_of(&lines, &key(index));
        assert_eq!(line["action"], "update", "{line}");
        assert_eq!(line["newId"], key(index), "{line}");
        assert!(line.get("error").is_none(), "{line}");
    }
    let failed = line_of(&lines, &key(3));
    assert_eq!(failed["action"], "cannot_restore", "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("its tags were not")),
        "{failed}"
    );
    backup.api.recover_path(&refused);
    assert_eq!(tags_now(0).await, ["VIP", "early"]);
    assert_eq!(tags_now(3).await, ["spam"]);
    let retried = restore(&backup, &token, &source_id, body("overwrite", false)).await;
    assert_eq!(counts(&retried), (0, 1, 3, 0), "{retried}");

    // Backed up again: every member's tags, and everything else restored, as in the snapshot.
    let again = back_up(&backup, &token, &source_id).await;
    let now = backup.stored("acme", &source_id, &again, "audience_members");
    for id in &ids {
        assert_eq!(tags_in(&now, list, id), tags_in(&then, list, id), "{id}");
    }
    assert_eq!(members_by_key(&now), members_by_key(&then));

    // Once more: nothing to do.
    let repeat = restore(&backup, &token, &source_id, body("overwrite", false)).await;
    assert_eq!(counts(&repeat), (0, 0, 4, 0), "{repeat}");
    backup.stop().await;
}

/// What a record's custom field holds that no `serde_json::Value` of this workspace holds exactly: `1e400`,
/// digits past f64, an integer past 2^64, lone surrogate escapes (RFC 8259 §6 and §8.2: valid JSON text).
const EXACT: &str = r#"[{"line1":"cut \ud800","line2":"\udc00 caf\u00e9","zip_code":12345678901234567890.123,"big":1e400,"n":123456789012345678901234567890,"tenth":0.1}]"#;

/// Digits only: a `Value` parses them, rounded, so a restore through one "succeeds" with other numbers.
const DIGITS: &str = r#"[{"zip_code":12345678901234567890.123,"n":123456789012345678901234567890,"m":-98765432109876543210}]"#;

#[tokio::test]
async fn a_restored_record_reaches_the_platform_with_the_exact_text_it_was_backed_up_with() {
    restored_exactly(EXACT).await;
}

#[tokio::test]
async fn a_restored_record_reaches_the_platform_with_its_digits_unrounded() {
    restored_exactly(DIGITS).await;
}

/// Backs up three Keap contacts whose addresses are `held` (JSON text), deletes one, restores it: the
/// create's body, as the platform received it, holds `held` byte for byte.
async fn restored_exactly(held: &str) {
    let case = cases().into_iter().find(|c| c.platform == "keap").unwrap();
    let (backup, _provider) = spawn(&case).await;
    backup.api.accept("keap", case.secret);
    backup.api.seed("keap", "contacts", 3);
    let path = "/keap/crm/rest/v1/contacts";
    // Every contact's addresses (a field a create sends) hold the values, as the platform sends them.
    backup.api.raw_field(path, "addresses", held);
    let token = backup.app.owner("acme");
    let source_id = source(&backup, &token, &case).await;
    let snapshot = back_up(&backup, &token, &source_id).await;

    backup.api.delete("keap", "contacts", [0]);
    let done = restore(
        &backup,
        &token,
        &source_id,
        json!({"snapshot": snapshot, "dataTypes": ["contacts"], "mode": "overwrite",
               "dryRun": false}),
    )
    .await;
    let bodies = backup.api.received_bodies(path);
    assert_eq!(bodies.len(), 1, "one create: {bodies:?} {done}");
    assert!(
        bodies[0].contains(&format!(r#""addresses":{held}"#)),
        "the create's body holds the addresses exactly as backed up: {}",
        bodies[0]
    );
    backup.stop().await;
}
