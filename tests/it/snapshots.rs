//! Snapshots, record history and export (issue 13 §4, §6): HubSpot contacts backed up in full, then changed,
//! added and deleted in the emulation and backed up incrementally and in full again; each backup is a point
//! in time whose records, versions and export match what the platform held then. A failed backup leaves no
//! index rows, and replaying the log merges nothing twice.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::time::Duration;

use listbackup_api::auth::Role;
use listbackup_emulators::PagingFault;
use serde_json::{json, Value};
use support::backup::{sync_when_free, BackupApp};
use support::{problem_code, wait_until, TestApp};

const TOKEN: &str = "pat-na1-snapshots";

async fn spawn() -> BackupApp {
    let backup = BackupApp::spawn_emulating(&["hubspot"], |_| {}).await;
    backup.api.accept("hubspot", TOKEN);
    backup.api.lift_rate_limits();
    backup
}

/// A HubSpot source of contacts; its id.
async fn hubspot_source(app: &TestApp, token: &str, incremental: bool) -> String {
    let response = app
        .post(
            "/connections",
            token,
            &json!({"platformId": "hubspot", "name": "HubSpot", "credentials": {"accessToken": TOKEN}}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let connection: Value = response.json().await.unwrap();
    let response = app
        .post(
            "/sources",
            token,
            &json!({"connectionId": connection["connectionId"], "name": "Contacts",
                    "dataTypes": ["contacts"], "incremental": incremental}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let view: Value = response.json().await.unwrap();
    view["sourceId"].as_str().unwrap().to_owned()
}

/// Runs one backup to success and waits for it to show as a snapshot; its job id.
async fn backup_once(backup: &BackupApp, token: &str, source_id: &str) -> String {
    let job_id = sync_when_free(&backup.app, token, source_id).await;
    let job = backup.finished(token, &job_id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    wait_until(
        Duration::from_secs(45),
        "the backup to be indexed",
        || async {
            snapshots(&backup.app, token, source_id)
                .await
                .iter()
                .any(|s| s["jobId"] == job_id.as_str())
        },
    )
    .await;
    job_id
}

async fn get_json(app: &TestApp, token: &str, path: &str) -> Value {
    let response = app.get(path, token).await;
    assert_eq!(response.status(), 200, "GET {path}");
    response.json().await.unwrap()
}

async fn snapshots(app: &TestApp, token: &str, source_id: &str) -> Vec<Value> {
    get_json(app, token, &format!("/sources/{source_id}/snapshots")).await["snapshots"]
        .as_array()
        .unwrap()
        .clone()
}

/// Every record of the snapshot, page by page (`limit` each), by record id.
async fn browse(
    app: &TestApp,
    token: &str,
    source_id: &str,
    job_id: &str,
    limit: u32,
) -> BTreeMap<String, Value> {
    let mut records = BTreeMap::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = format!(
            "/sources/{source_id}/snapshots/{job_id}/records?dataType=contacts&limit={limit}"
        );
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = get_json(app, token, &path).await;
        pages += 1;
        for r in page["records"].as_array().unwrap() {
            let previous = records.insert(
                r["recordId"].as_str().unwrap().to_owned(),
                r["record"].clone(),
            );
            assert!(previous.is_none(), "a record listed twice: {r}");
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(pages < 100, "paging does not end");
    }
    records
}

/// The files of an exported zip, by name.
async fn export(
    app: &TestApp,
    token: &str,
    source_id: &str,
    job_id: &str,
    format: &str,
) -> BTreeMap<String, String> {
    let response = app
        .get(
            &format!("/sources/{source_id}/snapshots/{job_id}/export?format={format}"),
            token,
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/zip");
    let bytes = response.bytes().await.unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let mut files = BTreeMap::new();
    for i in 0..zip.len() {
        let mut file = zip.by_index(i).unwrap();
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        files.insert(file.name().to_owned(), text);
    }
    files
}

/// The platform's contacts now, by id.
async fn platform_contacts(backup: &BackupApp) -> BTreeMap<String, Value> {
    let url = format!(
        "{}/crm/v3/objects/contacts?limit=100",
        backup.api.api_url("hubspot")
    );
    let client = reqwest::Client::new();
    let mut contacts = BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let url = match &after {
            Some(a) => format!("{url}&after={a}"),
            None => url.clone(),
        };
        let page: Value = client
            .get(&url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for c in page["results"].as_array().unwrap() {
            contacts.insert(c["id"].as_str().unwrap().to_owned(), c.clone());
        }
        match page["paging"]["next"]["after"].as_str() {
            Some(a) => after = Some(a.to_owned()),
            None => break,
        }
    }
    contacts
}

#[tokio::test]
async fn snapshots_merge_incremental_chains_and_show_each_records_history() {
    let backup = spawn().await;
    let app = &backup.app;
    let owner = app.owner("acme");
    let viewer = app.token("acme", &[Role::Viewer]);
    backup.api.seed("hubspot", "contacts", 30);
    let source_id = hubspot_source(app, &owner, true).await;

    // 1: full. 2: incremental, two changed and three added. 3: full again (incremental off), one deleted.
    let first = backup_once(&backup, &owner, &source_id).await;
    let at_first = platform_contacts(&backup).await;
    backup.api.touch("hubspot", "contacts", [2, 5]);
    backup.api.append("hubspot", "contacts", 3);
    let second = backup_once(&backup, &owner, &source_id).await;
    let at_second = platform_contacts(&backup).await;
    assert_eq!(at_second.len(), 33);
    let response = app
        .put(
            &format!("/sources/{source_id}"),
            &owner,
            &json!({"incremental": false}),
        )
        .await;
    assert_eq!(response.status(), 200);
    backup.api.delete("hubspot", "contacts", [7]);
    let third = backup_once(&backup, &owner, &source_id).await;
    let at_third = platform_contacts(&backup).await;
    assert_eq!(at_third.len(), 32);

    // Newest first, each with the merged state's counts and what it changed; a viewer may read.
    let list = snapshots(app, &viewer, &source_id).await;
    let ids: Vec<&str> = list.iter().map(|s| s["jobId"].as_str().unwrap()).collect();
    assert_eq!(ids, [third.as_str(), second.as_str(), first.as_str()]);
    assert_eq!(list[2]["records"], json!({"contacts": 30}));
    assert_eq!(list[2]["incremental"], false);
    assert_eq!(list[1]["records"], json!({"contacts": 33}));
    assert_eq!(list[1]["incremental"], true);
    assert_eq!(
        list[1]["changes"]["contacts"],
        json!({"added": 3, "changed": 2, "deleted": 0})
    );
    assert_eq!(list[0]["records"], json!({"contacts": 32}));
    assert_eq!(
        list[0]["changes"]["contacts"],
        json!({"added": 0, "changed": 0, "deleted": 1})
    );
    // Cursor pagination as other lists.
    let page = get_json(
        app,
        &viewer,
        &format!("/sources/{source_id}/snapshots?limit=2"),
    )
    .await;
    assert_eq!(page["snapshots"].as_array().unwrap().len(), 2);
    let next = page["nextCursor"].as_str().unwrap();
    let rest = get_json(
        app,
        &viewer,
        &format!("/sources/{source_id}/snapshots?limit=2&cursor={next}"),
    )
    .await;
    assert_eq!(rest["snapshots"][0]["jobId"], first.as_str());
    assert!(rest["nextCursor"].is_null());

    // Each snapshot's records are the platform's as of that backup: the incremental one merged with the full
    // one before it (27 of its 33 records were stored by the first backup).
    assert_eq!(browse(app, &viewer, &source_id, &first, 7).await, at_first);
    let merged = browse(app, &viewer, &source_id, &second, 10).await;
    assert_eq!(merged, at_second);
    assert_eq!(browse(app, &viewer, &source_id, &third, 50).await, at_third);
    let page = get_json(
        app,
        &viewer,
        &format!("/sources/{source_id}/snapshots/{second}/records?dataType=contacts&limit=200"),
    )
    .await;
    let stored_by_first = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["storedByJobId"] == first.as_str())
        .count();
    assert_eq!(
        stored_by_first, 28,
        "untouched records come from the full backup"
    );

    // Search: a substring of the record's JSON text, case-insensitive.
    let id5 = backup.api.id_of("hubspot", "contacts", 5);
    let found = get_json(
        app,
        &viewer,
        &format!("/sources/{source_id}/snapshots/{second}/records?dataType=contacts&q=CONTACT5%40EXAMPLE"),
    )
    .await;
    let found = found["records"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["recordId"], id5.as_str());
    assert_eq!(found[0]["record"], at_second[&id5]);

    // Versions: contact 5 changed once (a JSON Patch names what), contact 7 was deleted by the third backup.
    let history = get_json(
        app,
        &viewer,
        &format!("/sources/{source_id}/records/contacts/{id5}/versions"),
    )
    .await;
    let versions = history["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "{history}");
    assert_eq!(versions[0]["firstJobId"], first.as_str());
    assert_eq!(versions[0]["lastJobId"], first.as_str());
    assert!(versions[0]["changes"].is_null());
    assert_eq!(versions[0]["record"], at_first[&id5]);
    assert_eq!(versions[1]["firstJobId"], second.as_str());
    assert_eq!(versions[1]["lastJobId"], third.as_str());
    assert_eq!(versions[1]["current"], true);
    assert_eq!(versions[1]["record"], at_second[&id5]);
    let patch: json_patch::Patch = serde_json::from_value(versions[1]["changes"].clone()).unwrap();
    assert!(!patch.0.is_empty());
    let mut patched = at_first[&id5].clone();
    json_patch::patch(&mut patched, &patch).unwrap();
    assert_eq!(
        patched, at_second[&id5],
        "the patch turns the first version into the second"
    );
    let id7 = backup.api.id_of("hubspot", "contacts", 7);
    let history = get_json(
        app,
        &viewer,
        &format!("/sources/{source_id}/records/contacts/{id7}/versions"),
    )
    .await;
    let versions = history["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0]["lastJobId"], second.as_str());
    assert_eq!(versions[0]["deletedByJobId"], third.as_str());
    assert_eq!(versions[0]["current"], false);

    // Export: the merged state as NDJSON and as CSV.
    let files = export(app, &viewer, &source_id, &second, "ndjson").await;
    assert_eq!(files.keys().collect::<Vec<_>>(), ["contacts.ndjson"]);
    let exported: BTreeMap<String, Value> = files["contacts.ndjson"]
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["id"].as_str().unwrap().to_owned(), v)
        })
        .collect();
    assert_eq!(exported, at_second);
    let files = export(app, &viewer, &source_id, &second, "csv").await;
    let mut csv = csv::Reader::from_reader(files["contacts.csv"].as_bytes());
    let header: Vec<String> = csv.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(header[0], "id");
    let keys: BTreeSet<String> = at_second
        .values()
        .flat_map(|c| c.as_object().unwrap().keys().cloned())
        .collect();
    assert_eq!(header.iter().cloned().collect::<BTreeSet<_>>(), keys);
    let rows: Vec<csv::StringRecord> = csv.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 33);
    for row in &rows {
        let contact = &at_second[&row[0]];
        for (column, cell) in header.iter().zip(row.iter()) {
            let expected = match &contact[column] {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            assert_eq!(cell, expected, "{column} of {}", &row[0]);
        }
    }
    backup.stop().await;
}

#[tokio::test]
async fn snapshots_follow_the_rules_of_source_routes() {
    let backup = spawn().await;
    let app = &backup.app;
    let owner = app.owner("acme");
    backup.api.seed("hubspot", "contacts", 5);
    let source_id = hubspot_source(app, &owner, false).await;
    let job = backup_once(&backup, &owner, &source_id).await;
    let id = backup.api.id_of("hubspot", "contacts", 1);

    // Another account's source, snapshot and record are byte for byte the missing ones.
    let other = app.owner("globex");
    let missing_source = uuid::Uuid::now_v7();
    let missing_job = uuid::Uuid::now_v7();
    for (theirs, missing) in [
        (
            format!("/sources/{source_id}/snapshots"),
            format!("/sources/{missing_source}/snapshots"),
        ),
        (
            format!("/sources/{source_id}/snapshots/{job}/records?dataType=contacts"),
            format!("/sources/{missing_source}/snapshots/{job}/records?dataType=contacts"),
        ),
        (
            format!("/sources/{source_id}/snapshots/{job}/export"),
            format!("/sources/{missing_source}/snapshots/{job}/export"),
        ),
        (
            format!("/sources/{source_id}/records/contacts/{id}/versions"),
            format!("/sources/{missing_source}/records/contacts/{id}/versions"),
        ),
    ] {
        let (status, theirs) = problem_code(app.get(&theirs, &other).await).await;
        let (_, missing) = problem_code(app.get(&missing, &other).await).await;
        assert_eq!(status, 404);
        assert_eq!(theirs["detail"], missing["detail"]);
        assert_eq!(theirs["code"], "NOT_FOUND");
    }
    let (status, body) = problem_code(
        app.get(
            &format!("/sources/{source_id}/snapshots/{missing_job}/records?dataType=contacts"),
            &owner,
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["detail"].as_str()),
        (404, Some("snapshot not found"))
    );
    let (status, _) = problem_code(
        app.get(
            &format!("/sources/{source_id}/records/contacts/nope/versions"),
            &owner,
        )
        .await,
    )
    .await;
    assert_eq!(status, 404);

    // Bad input names the field.
    for (path, field) in [
        (
            format!("/sources/{source_id}/snapshots/{job}/records"),
            "dataType",
        ),
        (
            format!("/sources/{source_id}/snapshots/{job}/records?dataType=deals"),
            "dataType",
        ),
        (
            format!("/sources/{source_id}/snapshots/{job}/records?dataType=contacts&cursor=x"),
            "cursor",
        ),
        (
            format!("/sources/{source_id}/snapshots/{job}/records?dataType=contacts&limit=0"),
            "limit",
        ),
        (
            format!("/sources/{source_id}/snapshots/{job}/records?dataType=contacts&sort=id"),
            "sort",
        ),
        (
            format!("/sources/{source_id}/snapshots/{job}/export?format=xml"),
            "format",
        ),
        (
            format!("/sources/{source_id}/records/contacts/a%00b/versions"),
            "recordId",
        ),
    ] {
        let (status, body) = problem_code(app.get(&path, &owner).await).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["errors"][0]["field"], field, "{path}: {body}");
    }

    // Expired by retention: 410, as its files.
    app.db
        .connect()
        .await
        .execute(
            "UPDATE read_jobs SET expired_at = now() WHERE job_id = $1",
            &[&job],
        )
        .await
        .unwrap();
    for path in [
        format!("/sources/{source_id}/snapshots/{job}/records?dataType=contacts"),
        format!("/sources/{source_id}/snapshots/{job}/export"),
    ] {
        let (status, body) = problem_code(app.get(&path, &owner).await).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (410, Some("GONE")),
            "{path}"
        );
    }
    let list = snapshots(app, &owner, &source_id).await;
    assert!(list[0]["expiredAt"].is_string());
    backup.stop().await;
}

#[tokio::test]
async fn a_failed_backup_leaves_no_index_rows_and_a_replay_merges_nothing_twice() {
    let backup = spawn().await;
    let app = &backup.app;
    let owner = app.owner("acme");
    backup.api.seed("hubspot", "contacts", 250);
    let source_id = hubspot_source(app, &owner, false).await;
    backup_once(&backup, &owner, &source_id).await;
    let db = app.db.connect().await;
    let count = |table: &'static str| {
        let db = &db;
        async move {
            db.query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    assert_eq!(count("record_versions").await, 250);

    // The indexer reads the log again from its start: every merge is done already.
    db.execute(
        "UPDATE checkpoints SET position = 0, transaction_id = '0' WHERE name = 'record-index'",
        &[],
    )
    .await
    .unwrap();
    // A leading reader keeps its position in memory and finds the row moved at its next batch (its
    // compare-and-set fails, and it starts over from the row): the next event brings that batch.
    let nudge = app
        .post("/source-groups", &owner, &json!({"name": "nudge"}))
        .await;
    assert_eq!(nudge.status(), 201);
    wait_until(
        Duration::from_secs(45),
        "the indexer to read the log again",
        || async {
            db.query_one(
                "SELECT (SELECT position FROM checkpoints WHERE name = 'record-index') \
                    >= (SELECT max(global_position) FROM events)",
                &[],
            )
            .await
            .unwrap()
            .get::<_, bool>(0)
        },
    )
    .await;
    assert_eq!(count("record_versions").await, 250);
    assert_eq!(count("source_snapshots").await, 1);

    // A backup that fails after its first page (the listing repeats its cursor): what it staged never
    // reaches the index, and is dropped.
    backup.api.append("hubspot", "contacts", 10);
    backup.api.paging_fault(
        "/hubspot/crm/v3/objects/contacts",
        PagingFault::IgnoresCursor,
    );
    let job_id = sync_when_free(app, &owner, &source_id).await;
    let job = backup.finished(&owner, &job_id).await;
    assert_eq!(job["status"], "failed", "{job}");
    wait_until(
        Duration::from_secs(45),
        "the failed job's staged rows to go",
        || async {
            count("record_index_staged").await == 0 && count("record_index_staged_files").await == 0
        },
    )
    .await;
    assert_eq!(count("record_versions").await, 250);
    assert_eq!(count("source_snapshots").await, 1);
    let list = snapshots(app, &owner, &source_id).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["records"], json!({"contacts": 250}));
    backup.stop().await;
}

/// Every record of one data type of a snapshot, page by page, as `(recordId, record)` in listing order.
async fn browse_all(
    app: &TestApp,
    token: &str,
    source_id: &str,
    job_id: &str,
    data_type: &str,
) -> Vec<(String, Value)> {
    let mut records = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let mut path =
            format!("/sources/{source_id}/snapshots/{job_id}/records?dataType={data_type}&limit=4");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = get_json(app, token, &path).await;
        for r in page["records"].as_array().unwrap() {
            records.push((
                r["recordId"].as_str().unwrap().to_owned(),
                r["record"].clone(),
            ));
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return records,
        }
    }
    panic!("paging does not end");
}

#[tokio::test]
async fn records_without_an_id_are_indexed_by_their_content() {
    let backup = spawn().await;
    let app = &backup.app;
    let owner = app.owner("acme");
    backup.api.seed("hubspot", "contacts", 5);
    // The platform's records carry no id at all.
    backup
        .api
        .without_field("/hubspot/crm/v3/objects/contacts", "id");
    let source_id = hubspot_source(app, &owner, false).await;
    let first = backup_once(&backup, &owner, &source_id).await;
    let second = backup_once(&backup, &owner, &source_id).await;

    // Browsable: each record under the hex of its content hash, none lost.
    let records = browse_all(app, &owner, &source_id, &second, "contacts").await;
    assert_eq!(records.len(), 5, "{records:?}");
    let keys: BTreeSet<&str> = records.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys.len(), 5);
    for (key, record) in &records {
        let hex = key
            .strip_prefix("sha256:")
            .unwrap_or_else(|| panic!("{key}"));
        assert_eq!(hex.len(), 32, "{key}");
        assert!(record.get("id").is_none(), "{record}");
        assert!(record["properties"]["email"].is_string(), "{record}");
    }
    // Stable from backup to backup: the unchanged records keep their one version.
    let list = snapshots(app, &owner, &source_id).await;
    assert_eq!(list[0]["records"], json!({"contacts": 5}));
    assert_eq!(
        list[0]["changes"]["contacts"],
        json!({"added": 0, "changed": 0, "deleted": 0})
    );
    let history = get_json(
        app,
        &owner,
        &format!(
            "/sources/{source_id}/records/contacts/{}/versions",
            records[0].0
        ),
    )
    .await;
    let versions = history["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1, "{history}");
    assert_eq!(versions[0]["firstJobId"], first.as_str());
    assert_eq!(versions[0]["current"], true);
    assert_eq!(versions[0]["record"], records[0].1);

    // Exported.
    let files = export(app, &owner, &source_id, &second, "ndjson").await;
    let exported: BTreeSet<String> = files["contacts.ndjson"]
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap().to_string())
        .collect();
    let browsed: BTreeSet<String> = records.iter().map(|(_, r)| r.to_string()).collect();
    assert_eq!(exported, browsed);
}

#[tokio::test]
async fn per_parent_records_sharing_an_id_are_kept_apart_by_their_parent() {
    const KEY: &str = "5f1b2c3d4e5f60718293a4b5c6d7e8f9-us21";
    let backup = BackupApp::spawn_emulating(&["mailchimp"], |_| {}).await;
    backup.api.accept("mailchimp", KEY);
    backup.api.lift_rate_limits();
    let app = &backup.app;
    let owner = app.owner("acme");
    // Two audiences with the same three members (a member's id is the hash of the e-mail address, the same
    // in every audience) and merge fields numbered 1, 2 in each.
    backup.api.seed("mailchimp", "audiences", 2);
    let lists: Vec<String> = (0..2)
        .map(|i| backup.api.id_of("mailchimp", "audiences", i))
        .collect();
    for list in &lists {
        backup
            .api
            .seed("mailchimp", &format!("audience_members/{list}"), 3);
        backup
            .api
            .seed("mailchimp", &format!("merge_fields/{list}"), 2);
    }
    let response = app
        .post(
            "/connections",
            &owner,
            &json!({"platformId": "mailchimp", "name": "Newsletters", "credentials": {"apiKey": KEY}}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let connection: Value = response.json().await.unwrap();
    let response = app
        .post(
            "/sources",
            &owner,
            &json!({"connectionId": connection["connectionId"], "name": "Audiences",
                    "dataTypes": ["audience_members", "merge_fields"], "incremental": false}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let source_id = response.json::<Value>().await.unwrap()["sourceId"]
        .as_str()
        .unwrap()
        .to_owned();
    let job_id = backup_once(&backup, &owner, &source_id).await;

    let members = browse_all(app, &owner, &source_id, &job_id, "audience_members").await;
    assert_eq!(members.len(), 6, "{members:?}");
    for (key, record) in &members {
        let list = record["list_id"].as_str().unwrap();
        assert_eq!(*key, format!("{list}/{}", record["id"].as_str().unwrap()));
    }
    let member = backup
        .api
        .id_of("mailchimp", &format!("audience_members/{}", lists[1]), 0);
    assert!(members
        .iter()
        .any(|(k, _)| *k == format!("{}/{member}", lists[0])));
    let fields = browse_all(app, &owner, &source_id, &job_id, "merge_fields").await;
    assert_eq!(fields.len(), 4, "{fields:?}");
    let list = snapshots(app, &owner, &source_id).await;
    assert_eq!(
        list[0]["records"],
        json!({"audience_members": 6, "merge_fields": 4})
    );
    // One member's history in one audience, its key's `/` escaped in the path.
    let history = get_json(
        app,
        &owner,
        &format!(
            "/sources/{source_id}/records/audience_members/{}%2F{member}/versions",
            lists[1]
        ),
    )
    .await;
    let versions = history["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1, "{history}");
    assert_eq!(versions[0]["record"]["list_id"], lists[1].as_str());
    let files = export(app, &owner, &source_id, &job_id, "ndjson").await;
    assert_eq!(files["audience_members.ndjson"].lines().count(), 6);
}

/// The worker stages its rows with COPY, beside the fetch and without a unique key: a record listed twice in
/// one fetch is staged twice under one key, and the merge keeps it once with its last line; keys from
/// `index_key` stay apart (a per-parent listing's record under its parent, identical records without an id
/// as `sha256:<hex>` and `….2`). Every row of a finished data
/// type is written when `finish` returns (the backup's end is recorded after it); a data type that failed
/// after staging rows has no file and nothing of it is merged.
#[tokio::test]
async fn the_merge_keeps_a_record_staged_twice_once_with_its_last_line() {
    use listbackup_workers::record_index::{
        content_hash, index_key, merge_backup, EndedBackup, StagedRecords,
    };

    let db = support::TestDatabase::create().await;
    listbackup::migrate::run(&db.url).await.unwrap();
    let pool = db.pool();
    let job_id = uuid::Uuid::now_v7();
    let source_id = uuid::Uuid::now_v7();
    let line = |i: u64| format!("{{\"id\":\"r{i}\",\"n\":{i}}}");
    let again = "{\"id\":\"r7\",\"n\":\"changed within the fetch\"}";

    let mut staged = StagedRecords::clear(&pool, &job_id.to_string(), 1)
        .await
        .unwrap();
    staged.start("contacts").await.unwrap();
    // More than one batch, then record 7 again (a page boundary shifted under an insert), a record 7 of a
    // per-parent listing (another record), and two identical records without an id (two records).
    for i in 0..4500 {
        staged
            .add(None, Some(&format!("r{i}")), &line(i), i)
            .await
            .unwrap();
    }
    staged.add(None, Some("r7"), again, 4500).await.unwrap();
    staged
        .add(Some("p1"), Some("r7"), &line(7), 4501)
        .await
        .unwrap();
    staged.add(None, None, "[1]", 4502).await.unwrap();
    staged.add(None, None, "[1]", 4503).await.unwrap();
    staged.finish(true, 4504).await.unwrap();
    let client = pool.get().await.unwrap();
    let staged_rows: i64 = client
        .query_one(
            "SELECT count(*) FROM record_index_staged WHERE job_id = $1 AND data_type = 'contacts'",
            &[&job_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        staged_rows, 4504,
        "every row is written once finish returns"
    );
    drop(client);
    // A data type that fails after staging rows: no file row.
    staged.start("companies").await.unwrap();
    staged
        .add(None, Some("c1"), "{\"id\":\"c1\"}", 0)
        .await
        .unwrap();
    drop(staged);

    let mut client = pool.get().await.unwrap();
    for _ in 0..2 {
        // The second time: merged already, nothing changes.
        let tx = client.transaction().await.unwrap();
        merge_backup(
            &tx,
            EndedBackup {
                job_id,
                source_id,
                account_id: "acme",
                finished_at: chrono::Utc::now(),
                partial: true,
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    let versions = client
        .query(
            "SELECT data_type, record_id, ordinal, content_hash FROM record_versions \
             WHERE source_id = $1 ORDER BY ordinal",
            &[&source_id],
        )
        .await
        .unwrap();
    assert_eq!(versions.len(), 4503);
    assert!(versions.iter().all(|v| v.get::<_, String>(0) == "contacts"));
    let r7: Vec<_> = versions
        .iter()
        .filter(|v| v.get::<_, String>(1) == "r7")
        .collect();
    assert_eq!(r7.len(), 1);
    assert_eq!(r7[0].get::<_, i32>(2), 4500);
    assert_eq!(r7[0].get::<_, Vec<u8>>(3), content_hash(again).to_vec());
    let r8 = versions
        .iter()
        .find(|v| v.get::<_, String>(1) == "r8")
        .unwrap();
    assert_eq!(r8.get::<_, Vec<u8>>(3), content_hash(&line(8)).to_vec());
    let key = |v: &tokio_postgres::Row| (v.get::<_, String>(1), v.get::<_, i32>(2));
    assert_eq!(key(&versions[4500]), ("p1/r7".to_owned(), 4501));
    let content = index_key(None, None, &content_hash("[1]"));
    assert_eq!(key(&versions[4501]), (content.clone(), 4502));
    assert_eq!(key(&versions[4502]), (format!("{content}.2"), 4503));
    let counts: Value = client
        .query_one(
            "SELECT counts FROM source_snapshots WHERE job_id = $1",
            &[&job_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(counts, json!({"contacts": 4503}));
}

/// The lines of a data file as a download gives them, decompressed (every gzip member).
async fn downloaded_lines(app: &TestApp, token: &str, job_id: &str, name: &str) -> Vec<Value> {
    let response = app
        .get(&format!("/jobs/{job_id}/files/{name}"), token)
        .await;
    assert_eq!(response.status(), 200);
    let gz = response.bytes().await.unwrap();
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn pages_and_versions_deep_in_a_large_backup_read_from_the_gzip_member_that_holds_them() {
    let backup = spawn().await;
    let app = &backup.app;
    let owner = app.owner("acme");
    backup.api.seed("hubspot", "contacts", 2_500);
    let source_id = hubspot_source(app, &owner, false).await;
    let job_id = backup_once(&backup, &owner, &source_id).await;

    // The data file is several gzip members, each listed in the manifest as [first line, offset].
    let manifest = get_json(app, &owner, &format!("/jobs/{job_id}/files/manifest.json")).await;
    let points = manifest["files"][0]["seekPoints"]
        .as_array()
        .unwrap()
        .clone();
    assert!(points.len() >= 2, "{}", manifest["files"][0]);
    let lines = downloaded_lines(app, &owner, &job_id, "contacts.ndjson.gz").await;
    assert_eq!(lines.len(), 2_500);

    // A page from a cursor just before, at and after each member's first line (and deep in the file)
    // gives exactly the file's next lines: counting lines restarts right at each seek.
    let mut positions: Vec<i64> = points
        .iter()
        .flat_map(|p| {
            let line = p[0].as_i64().unwrap();
            [line - 2, line - 1, line]
        })
        .collect();
    positions.push(2_400);
    for after in positions {
        use base64::Engine as _;
        let cursor =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("v1:r:1:{after}"));
        let page = get_json(
            app,
            &owner,
            &format!(
                "/sources/{source_id}/snapshots/{job_id}/records?dataType=contacts&limit=7&cursor={cursor}"
            ),
        )
        .await;
        let got: Vec<&Value> = page["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| &r["record"])
            .collect();
        let start = (after + 1) as usize;
        let want: Vec<&Value> = lines[start..start + 7].iter().collect();
        assert_eq!(got, want, "a page after line {after}");
    }

    // One record's version, from the last member, and one from the first line of a later member.
    for line in [2_499usize, points[1][0].as_u64().unwrap() as usize] {
        let id = lines[line]["id"].as_str().unwrap();
        let history = get_json(
            app,
            &owner,
            &format!("/sources/{source_id}/records/contacts/{id}/versions"),
        )
        .await;
        assert_eq!(history["versions"][0]["record"], lines[line], "line {line}");
    }
}

/// A record holding what a `serde_json::Value` cannot (`1e400`, a lone surrogate `"\ud800"`) or holds only
/// rounded (`12345678901234567890.123`, an integer past 2^64) is served by the snapshot's records route and
/// the record's history exactly as stored, and its CSV row is not left empty. Before, both routes parsed
/// each stored line into a `Value`: such a record answered 500 as a "damaged" backup file, or came back with
/// its numbers rounded (databricks/cli#4136: large ids rounded by a float parse).
#[tokio::test]
async fn snapshot_records_are_served_as_stored_whatever_they_hold() {
    const HELD: &str = r#"{"big":1e400,"digits":12345678901234567890.123,"id":123456789012345678901234567890,"lone":"cut \ud800","nul":"a\u0000b"}"#;
    let backup = spawn().await;
    let app = &backup.app;
    let owner = app.owner("acme");
    backup.api.seed("hubspot", "contacts", 12);
    backup
        .api
        .raw_field("/hubspot/crm/v3/objects/contacts", "x_custom", HELD);
    let source_id = hubspot_source(app, &owner, false).await;
    let job = backup_once(&backup, &owner, &source_id).await;
    let member = format!(r#""x_custom":{HELD}"#);

    let response = app
        .get(
            &format!("/sources/{source_id}/snapshots/{job}/records?dataType=contacts&limit=200"),
            &owner,
        )
        .await;
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    assert_eq!(body.matches(&member).count(), 12, "{body}");

    let page: Value = serde_json::from_str(&body.replace(&member, r#""x_custom":null"#)).unwrap();
    let id = page["records"][0]["recordId"].as_str().unwrap().to_owned();
    let response = app
        .get(
            &format!("/sources/{source_id}/records/contacts/{id}/versions"),
            &owner,
        )
        .await;
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    assert_eq!(body.matches(&member).count(), 1, "{body}");

    // The export: NDJSON lines as stored; each CSV row carries the record, its custom field as stored.
    let files = export(app, &owner, &source_id, &job, "ndjson").await;
    assert_eq!(files["contacts.ndjson"].matches(&member).count(), 12);
    let files = export(app, &owner, &source_id, &job, "csv").await;
    let mut csv = csv::Reader::from_reader(files["contacts.csv"].as_bytes());
    let header: Vec<String> = csv.headers().unwrap().iter().map(str::to_owned).collect();
    let column = header.iter().position(|c| c == "x_custom").unwrap();
    let rows: Vec<csv::StringRecord> = csv.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 12);
    for row in &rows {
        assert!(!row[0].is_empty(), "{row:?}");
        assert_eq!(&row[column], HELD);
    }
}
