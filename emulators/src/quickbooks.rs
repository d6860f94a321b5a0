//! QuickBooks Online Accounting API v3, as Intuit's reference describes it
//! (https://developer.intuit.com/app/developer/qbo/docs/api/accounting/all-entities/account, with
//! .../docs/learn/explore-the-quickbooks-online-api/data-queries, .../docs/learn/rest-api-features,
//! .../docs/learn/limits-and-throttles and .../docs/develop/troubleshooting/error-codes). Served under
//! `/quickbooks/v3/company/{realmId}` for the one company [`REALM_ID`].
//!
//! - Authentication: an OAuth access token as `Authorization: Bearer`. None or one not accepted: 401 with
//!   the lower-case fault Intuit answers then (`{"fault":{"error":[{"message":"message=AuthenticationFailed;
//!   errorCode=003200; statusCode=401","detail":…,"code":"3200"}],"type":"AUTHENTICATION"}}`); another
//!   company's realm in the path: 403 `AuthorizationFault`.
//! - JSON only when asked (`Accept: application/json`); XML otherwise. `minorversion` must be a number.
//! - The query API: `GET /query?query=<statement>` (or `POST /query` with the statement as an
//!   `application/text` body). Statements: `SELECT * | COUNT(*) FROM <Entity> [WHERE <condition> [AND
//!   <condition>]…] [ORDERBY <property> [ASC|DESC]] [STARTPOSITION n] [MAXRESULTS m]`, keywords in any
//!   case; conditions on `Metadata.LastUpdatedTime` / `Metadata.CreateTime` (`=`, `<`, `>`, `<=`, `>=`
//!   against a quoted date or date-time), `Id` (`=`, `IN`) and, for name lists only, `Active` (`=`,
//!   `IN (true, false)`). Anything else is a 400 `QueryParserError` / `QueryValidationError`. STARTPOSITION
//!   counts from 1; MAXRESULTS defaults to 100 and is held to 1000. Without an `Active` condition a name
//!   list answers its active records only (here every tenth record is inactive). ORDERBY
//!   `Metadata.LastUpdatedTime` or `Id` (the default order).
//! - The answer: `{"QueryResponse":{"<Entity>":[…],"startPosition":n,"maxResults":<returned>},"time":…}`,
//!   and `{"QueryResponse":{},"time":…}` when nothing matches. Records: `Id` (a string), `SyncToken`,
//!   `MetaData.{CreateTime,LastUpdatedTime}` to the second in the company's offset (`-08:00` here).
//! - `GET /companyinfo/{realmId}`: `{"CompanyInfo":{…},"time":…}`, also `SELECT * FROM CompanyInfo`.
//! - Errors: `{"Fault":{"Error":[{"Message","Detail","code"}],"type"},"time"}`; 429 `ThrottleExceeded`.
//! - Writes of customers and items (Customer and Item entity references): `POST /customer` (`/item`) with
//!   the entity as a JSON object creates it, answered 200 `{"Customer": {…}, "time": …}` with `Id` and
//!   `SyncToken` `"0"`; with an `Id` it updates that record: `"sparse": true` changes the fields sent
//!   (a `null` clears one), without it the fields not sent are cleared. An update must carry the record's
//!   current `SyncToken` (missing: 400 code 2020; older: 400 "Stale Object Error" code 5010) and answers the
//!   record with the next one. Refused with a `ValidationFault`: a property the entity does not have (2010),
//!   an unknown `Id` (610), a customer without any name or an item without `Name` (2020), a
//!   `DisplayName` in use by another customer, vendor or employee or an item `Name` in use (6240
//!   "Duplicate Name Exists Error", without case), an inventory item without its three accounts,
//!   `QtyOnHand`, `InvStartDate` and `TrackQtyOnHand`, a service or non-inventory item without an
//!   `IncomeAccountRef` (6000). Read-only properties sent back (`MetaData`, `FullyQualifiedName`, …) are
//!   ignored. There is no delete: `Active: false` is how a name-list record goes.
//!
//! Every entity is queried on the one `/query` path; [`crate::PlatformApi::truncate_every`] with
//! `<query path>#<Entity>` (e.g. `…/query#Vendor`) cuts the answers about that entity only.
//!
//! Data sets are named as the catalog's data types: `customers`, `invoices`, `tax_codes`, ….

use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::{param, Dataset, PagingFault, Query, State};

/// The company (realm) this emulation holds; the OAuth provider emulation of the tests hands it out.
pub const REALM_ID: &str = "9130354771251366";

/// Entities the query API answers: (entity, data set, name list).
const ENTITIES: &[(&str, &str, bool)] = &[
    ("Account", "accounts", true),
    ("Customer", "customers", true),
    ("Vendor", "vendors", true),
    ("Employee", "employees", true),
    ("Item", "items", true),
    ("Invoice", "invoices", false),
    ("Estimate", "estimates", false),
    ("SalesReceipt", "sales_receipts", false),
    ("Payment", "payments", false),
    ("CreditMemo", "credit_memos", false),
    ("Bill", "bills", false),
    ("BillPayment", "bill_payments", false),
    ("Purchase", "purchases", false),
    ("Deposit", "deposits", false),
    ("Transfer", "transfers", false),
    ("JournalEntry", "journal_entries", false),
    ("TaxCode", "tax_codes", true),
    ("Class", "classes", true),
    ("Department", "departments", true),
];

/// The company's offset: QuickBooks writes times in the company's time zone.
fn company_offset() -> FixedOffset {
    FixedOffset::west_opt(8 * 3600).unwrap()
}

fn time(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap()
        .with_timezone(&company_offset())
        .to_rfc3339_opts(SecondsFormat::Secs, false)
}

fn now() -> String {
    Utc::now()
        .with_timezone(&company_offset())
        .to_rfc3339_opts(SecondsFormat::Millis, false)
}

/// A fault in the documented shape.
fn fault(status: StatusCode, kind: &str, message: &str, detail: &str, code: &str) -> HttpResponse {
    HttpResponse::build(status).json(fault_body(kind, message, detail, code))
}

fn fault_body(kind: &str, message: &str, detail: &str, code: &str) -> Value {
    json!({"Fault": {"Error": [{"Message": message, "Detail": detail, "code": code}], "type": kind},
           "time": now()})
}

/// The 401 body, spelled in lower case as Intuit's authentication layer answers it.
fn authentication_failed() -> HttpResponse {
    HttpResponse::Unauthorized().json(json!({"warnings": null, "intuitObject": null,
        "fault": {"error": [{"message": "message=AuthenticationFailed; errorCode=003200; statusCode=401",
                             "detail": null, "code": "3200", "element": null}],
                  "type": "AUTHENTICATION"},
        "report": null, "queryResponse": null, "batchItemResponse": [], "attachableResponse": [],
        "syncErrorResponse": null, "requestId": null, "time": Utc::now().timestamp_millis(),
        "status": null, "cdcresponse": []}))
}

/// The error body of a status injected by the fault controls (`fail_next`, `rate_limit_next`).
pub(crate) fn error_body(status: StatusCode) -> Value {
    match status.as_u16() {
        429 => fault_body(
            "SERVICE",
            "message=ThrottleExceeded; errorCode=003001; statusCode=429",
            "The request limit was reached.",
            "3001",
        ),
        s if s >= 500 => fault_body(
            "SystemFault",
            "An application error has occurred while processing your request",
            "System Failure Error: An unexpected error occurred while accessing or saving your data.",
            "10000",
        ),
        _ => fault_body(
            "ValidationFault",
            status.canonical_reason().unwrap_or("Error"),
            "The request could not be processed.",
            "4000",
        ),
    }
}

fn parser_error(detail: &str) -> HttpResponse {
    fault(
        StatusCode::BAD_REQUEST,
        "ValidationFault",
        "Error parsing query",
        &format!("QueryParserError: {detail}"),
        "4000",
    )
}

fn validation_error(detail: &str) -> HttpResponse {
    fault(
        StatusCode::BAD_REQUEST,
        "ValidationFault",
        "Invalid query",
        &format!("QueryValidationError: {detail}"),
        "4001",
    )
}

/// Answers a request under `/quickbooks` (`rest` is the path after it).
pub(crate) fn answer(
    state: &mut State,
    req: &HttpRequest,
    rest: &str,
    query: &Query,
    body: &[u8],
    fault_kind: Option<PagingFault>,
) -> HttpResponse {
    let token = crate::bearer(req).unwrap_or_default();
    let accepted = state
        .accepted
        .get("quickbooks")
        .is_some_and(|tokens| tokens.contains(token));
    if token.is_empty() || !accepted {
        return authentication_failed();
    }
    let Some(company) = rest.strip_prefix("/v3/company/") else {
        return HttpResponse::NotFound().finish();
    };
    let (realm, resource) = company.split_once('/').unwrap_or((company, ""));
    if realm != REALM_ID {
        return fault(
            StatusCode::FORBIDDEN,
            "AuthorizationFault",
            "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403",
            "",
            "003100",
        );
    }
    if param(query, "minorversion").is_some_and(|v| v.parse::<u32>().is_err()) {
        return fault(
            StatusCode::BAD_REQUEST,
            "ValidationFault",
            "Invalid minor version",
            "The minorversion parameter must be a number.",
            "2020",
        );
    }
    let json = crate::header(req, "Accept").is_some_and(|a| a.contains("application/json"));
    let answer = match (req.method(), resource) {
        (&Method::GET, "query") => match param(query, "query") {
            Some(statement) => run(state, statement, fault_kind),
            None => return parser_error("the query parameter is missing"),
        },
        (&Method::POST, "query") => match std::str::from_utf8(body) {
            Ok(statement) => run(state, statement, fault_kind),
            Err(_) => return parser_error("the statement is not text"),
        },
        (&Method::POST, "customer") => return write(state, "Customer", body),
        (&Method::POST, "item") => return write(state, "Item", body),
        (&Method::GET, r) if r == format!("companyinfo/{REALM_ID}") => Ok((
            "CompanyInfo",
            json!({"CompanyInfo": company_info(), "time": now()}),
        )),
        _ => return HttpResponse::NotFound().finish(),
    };
    match answer {
        Ok((entity, answer)) if json => {
            let cut = format!("/quickbooks/v3/company/{REALM_ID}/query#{entity}");
            if state.truncate_always.contains(&cut) {
                let text = answer.to_string();
                return HttpResponse::Ok()
                    .content_type("application/json")
                    .body(text[..text.len() / 2].to_owned());
            }
            HttpResponse::Ok().json(answer)
        }
        // Intuit answers XML unless asked for JSON; the shape of it does not matter here.
        Ok(_) => HttpResponse::Ok().content_type("application/xml").body(format!(
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><IntuitResponse xmlns="http://schema.intuit.com/finance/v3" time="{}"><QueryResponse/></IntuitResponse>"#,
            now()
        )),
        Err(refused) => refused,
    }
}

fn company_info() -> Value {
    json!({"CompanyName": "Emulated Books Inc", "LegalName": "Emulated Books Incorporated",
        "CompanyAddr": {"Id": "1", "Line1": "1 Ledger Way", "City": "Mountain View",
                        "CountrySubDivisionCode": "CA", "PostalCode": "94043"},
        "Country": "US", "Email": {"Address": "books@emulated.test"}, "FiscalYearStartMonth": "January",
        "SupportedLanguages": "en", "domain": "QBO", "sparse": false, "Id": "1", "SyncToken": "4",
        "MetaData": {"CreateTime": "2023-06-01T09:00:00-07:00", "LastUpdatedTime": "2023-12-20T10:15:00-08:00"}})
}

/// One token of a statement.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Symbol(String),
}

fn tokens(statement: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = statement.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '\'' {
            chars.next();
            let mut text = String::new();
            loop {
                match chars.next() {
                    Some('\\') => text.extend(chars.next()),
                    Some('\'') => break,
                    Some(c) => text.push(c),
                    None => return Err("unterminated string".into()),
                }
            }
            out.push(Token::Quoted(text));
        } else if "(),*".contains(c) {
            chars.next();
            out.push(Token::Symbol(c.to_string()));
        } else if "<>=!".contains(c) {
            chars.next();
            let mut op = c.to_string();
            if chars.peek() == Some(&'=') {
                chars.next();
                op.push('=');
            }
            out.push(Token::Symbol(op));
        } else if c.is_alphanumeric() || "._-:+".contains(c) {
            let mut word = String::new();
            while let Some(&c) = chars
                .peek()
                .filter(|c| c.is_alphanumeric() || "._-:+".contains(**c))
            {
                word.push(c);
                chars.next();
            }
            out.push(Token::Word(word));
        } else {
            return Err(format!("Lexical error: encountered \"{c}\""));
        }
    }
    Ok(out)
}

/// A condition of a WHERE clause.
enum Condition {
    /// `Active = b` or `Active IN (…)`: the values allowed.
    Active(Vec<bool>),
    /// A time property compared with a bound (ms): (created rather than updated, operator, bound).
    Time(bool, String, i64),
    /// `Id = x` or `Id IN (…)`.
    Id(Vec<String>),
}

struct Statement {
    count: bool,
    entity: String,
    conditions: Vec<Condition>,
    /// By last update rather than id; descending.
    order: (bool, bool),
    start: u64,
    max: u64,
}

fn keyword(token: Option<&Token>, word: &str) -> bool {
    matches!(token, Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
}

fn symbol(token: Option<&Token>, s: &str) -> bool {
    matches!(token, Some(Token::Symbol(t)) if t == s)
}

/// A date or date-time literal: RFC 3339, or without an offset (the company's), or a date (its midnight).
fn literal_time(text: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_millis());
    }
    let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S")
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })?;
    Some(
        naive
            .and_local_timezone(company_offset())
            .single()?
            .timestamp_millis(),
    )
}

fn parse(statement: &str) -> Result<Statement, HttpResponse> {
    let tokens = tokens(statement).map_err(|e| parser_error(&e))?;
    let mut at = 0;
    let next = |at: &mut usize| {
        *at += 1;
        tokens.get(*at - 1)
    };
    let unexpected = |token: Option<&Token>| {
        parser_error(&match token {
            Some(t) => format!("Encountered {t:?} at position"),
            None => "Encountered \"<EOF>\"".to_owned(),
        })
    };
    if !keyword(next(&mut at), "select") {
        return Err(unexpected(tokens.first()));
    }
    let count = match next(&mut at) {
        Some(Token::Symbol(s)) if s == "*" => false,
        Some(Token::Word(w)) if w.eq_ignore_ascii_case("count") => {
            let ok = symbol(next(&mut at), "(")
                && symbol(next(&mut at), "*")
                && symbol(next(&mut at), ")");
            if !ok {
                return Err(unexpected(tokens.get(at - 1)));
            }
            true
        }
        // Projections are not supported by this emulation (Intuit's API answers them).
        other => return Err(unexpected(other)),
    };
    if !keyword(next(&mut at), "from") {
        return Err(unexpected(tokens.get(at - 1)));
    }
    let Some(Token::Word(entity)) = next(&mut at) else {
        return Err(unexpected(tokens.get(at - 1)));
    };
    let entity = entity.clone();
    let mut statement = Statement {
        count,
        entity,
        conditions: Vec::new(),
        order: (false, false),
        start: 1,
        max: 100,
    };
    if keyword(tokens.get(at), "where") {
        at += 1;
        loop {
            let Some(Token::Word(property)) = next(&mut at) else {
                return Err(unexpected(tokens.get(at - 1)));
            };
            let property = property.to_ascii_lowercase();
            let op = match next(&mut at) {
                Some(Token::Symbol(op)) if op != "(" && op != ")" && op != "," && op != "*" => {
                    op.clone()
                }
                Some(Token::Word(w)) if w.eq_ignore_ascii_case("in") => "in".to_owned(),
                other => return Err(unexpected(other)),
            };
            let values: Vec<Token> = if op == "in" {
                if !symbol(next(&mut at), "(") {
                    return Err(unexpected(tokens.get(at - 1)));
                }
                let mut values = Vec::new();
                loop {
                    match next(&mut at) {
                        Some(t @ (Token::Word(_) | Token::Quoted(_))) => values.push(t.clone()),
                        other => return Err(unexpected(other)),
                    }
                    match next(&mut at) {
                        Some(Token::Symbol(s)) if s == "," => continue,
                        Some(Token::Symbol(s)) if s == ")" => break,
                        other => return Err(unexpected(other)),
                    }
                }
                values
            } else {
                match next(&mut at) {
                    Some(t @ (Token::Word(_) | Token::Quoted(_))) => vec![t.clone()],
                    other => return Err(unexpected(other)),
                }
            };
            let text = |t: &Token| match t {
                Token::Word(w) | Token::Quoted(w) | Token::Symbol(w) => w.clone(),
            };
            let condition = match property.as_str() {
                "active" if op == "=" || op == "in" => {
                    let mut allowed = Vec::new();
                    for value in &values {
                        match text(value).to_ascii_lowercase().as_str() {
                            "true" => allowed.push(true),
                            "false" => allowed.push(false),
                            other => {
                                return Err(validation_error(&format!(
                                    "invalid value {other} for Active"
                                )))
                            }
                        }
                    }
                    Condition::Active(allowed)
                }
                "metadata.lastupdatedtime" | "metadata.createtime"
                    if ["=", "<", ">", "<=", ">="].contains(&op.as_str()) =>
                {
                    let Some(Token::Quoted(value)) = values.first() else {
                        return Err(parser_error("a date must be quoted"));
                    };
                    let Some(bound) = literal_time(value) else {
                        return Err(validation_error(&format!("invalid date {value}")));
                    };
                    Condition::Time(property == "metadata.createtime", op, bound)
                }
                "id" if op == "=" || op == "in" => Condition::Id(values.iter().map(text).collect()),
                _ => {
                    return Err(validation_error(&format!(
                        "property '{property}' with operator '{op}' is not queryable"
                    )))
                }
            };
            statement.conditions.push(condition);
            if keyword(tokens.get(at), "and") {
                at += 1;
                continue;
            }
            break;
        }
    }
    let orderby = if keyword(tokens.get(at), "orderby") {
        at += 1;
        true
    } else if keyword(tokens.get(at), "order") && keyword(tokens.get(at + 1), "by") {
        at += 2;
        true
    } else {
        false
    };
    if orderby {
        let by_update = match next(&mut at) {
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("metadata.lastupdatedtime") => true,
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("id") => false,
            Some(Token::Word(w)) => {
                return Err(validation_error(&format!("property '{w}' is not sortable")))
            }
            other => return Err(unexpected(other)),
        };
        let descending = if keyword(tokens.get(at), "desc") {
            at += 1;
            true
        } else {
            if keyword(tokens.get(at), "asc") {
                at += 1;
            }
            false
        };
        statement.order = (by_update, descending);
    }
    while at < tokens.len() {
        let start = keyword(tokens.get(at), "startposition");
        if !start && !keyword(tokens.get(at), "maxresults") {
            return Err(unexpected(tokens.get(at)));
        }
        at += 1;
        let Some(Token::Word(n)) = next(&mut at) else {
            return Err(unexpected(tokens.get(at - 1)));
        };
        let Ok(n) = n.parse::<u64>() else {
            return Err(parser_error(&format!("{n} is not a number")));
        };
        if start {
            statement.start = n.max(1);
        } else {
            // Intuit answers at most 1000 per query.
            statement.max = n.clamp(1, 1000);
        }
    }
    Ok(statement)
}

/// Runs a statement: the entity and the answer's JSON, or the refusal.
fn run(
    state: &mut State,
    statement: &str,
    fault_kind: Option<PagingFault>,
) -> Result<(&'static str, Value), HttpResponse> {
    let statement = parse(statement)?;
    if statement.entity.eq_ignore_ascii_case("CompanyInfo") {
        let records = if statement.start == 1 {
            vec![company_info()]
        } else {
            vec![]
        };
        let mut response = json!({});
        if statement.count {
            response["totalCount"] = json!(1);
        } else if !records.is_empty() {
            response = json!({"CompanyInfo": records, "startPosition": 1, "maxResults": 1});
        }
        return Ok((
            "CompanyInfo",
            json!({"QueryResponse": response, "time": now()}),
        ));
    }
    let Some((entity, data_type, name_list)) = ENTITIES
        .iter()
        .find(|(e, _, _)| e.eq_ignore_ascii_case(&statement.entity))
        .copied()
    else {
        return Err(validation_error(&format!(
            "Invalid entity name {}",
            statement.entity
        )));
    };
    let mut active: Vec<bool> = vec![true];
    for condition in &statement.conditions {
        if let Condition::Active(allowed) = condition {
            if !name_list {
                return Err(validation_error(&format!(
                    "property 'Active' is not queryable on {entity}"
                )));
            }
            active.clone_from(allowed);
        }
    }
    let dataset = state.dataset("quickbooks", data_type);
    // Times are written to the second; conditions compare what is written.
    let seconds = |ms: i64| ms.div_euclid(1000) * 1000;
    let matches = |i: u64| {
        let is_active = !name_list || is_active(dataset, i);
        (!name_list || active.contains(&is_active))
            && statement
                .conditions
                .iter()
                .all(|condition| match condition {
                    Condition::Active(_) => true,
                    Condition::Time(created, op, bound) => {
                        let t = seconds(if *created {
                            dataset.created_ms(i)
                        } else {
                            dataset.updated_ms(i)
                        });
                        match op.as_str() {
                            "=" => t == *bound,
                            "<" => t < *bound,
                            ">" => t > *bound,
                            "<=" => t <= *bound,
                            _ => t >= *bound,
                        }
                    }
                    Condition::Id(ids) => ids.contains(&(i + 1).to_string()),
                })
    };
    let mut found: Vec<u64> = (0..dataset.count)
        .filter(|i| dataset.visible(*i) && matches(*i))
        .collect();
    let (by_update, descending) = statement.order;
    if by_update {
        found.sort_by_key(|i| (seconds(dataset.updated_ms(*i)), *i));
    }
    if descending {
        found.reverse();
    }
    if statement.count {
        return Ok((
            entity,
            json!({"QueryResponse": {"totalCount": found.len()}, "time": now()}),
        ));
    }
    let start = if fault_kind == Some(PagingFault::IgnoresCursor) {
        1
    } else {
        statement.start
    };
    let records: Vec<Value> = found
        .iter()
        .skip((start - 1) as usize)
        .take(statement.max as usize)
        .map(|i| record(dataset, entity, name_list, *i))
        .collect();
    let response = if records.is_empty() {
        json!({})
    } else {
        json!({entity: records, "startPosition": start, "maxResults": records.len()})
    };
    Ok((entity, json!({"QueryResponse": response, "time": now()})))
}

/// Whether name-list record `index` is active: as written last, else generated (every tenth inactive).
fn is_active(dataset: &Dataset, index: u64) -> bool {
    match dataset.written.get(&index) {
        Some(written) => written
            .fields
            .get("Active")
            .and_then(Value::as_bool)
            .unwrap_or(!written.created && index % 10 != 9),
        None => index % 10 != 9,
    }
}

/// Properties a write may send, per entity: the writable ones, then the read-only ones it ignores.
fn properties(entity: &str) -> (&'static [&'static str], &'static [&'static str]) {
    match entity {
        "Customer" => (
            &[
                "DisplayName",
                "Title",
                "GivenName",
                "MiddleName",
                "FamilyName",
                "Suffix",
                "CompanyName",
                "PrintOnCheckName",
                "PrimaryEmailAddr",
                "PrimaryPhone",
                "Mobile",
                "Fax",
                "AlternatePhone",
                "WebAddr",
                "BillAddr",
                "ShipAddr",
                "Notes",
                "Taxable",
                "Active",
                "Job",
                "BillWithParent",
                "ParentRef",
                "PreferredDeliveryMethod",
                "ResaleNum",
                "SalesTermRef",
                "PaymentMethodRef",
                "DefaultTaxCodeRef",
                "CurrencyRef",
                "Balance",
                "OpenBalanceDate",
            ],
            &[
                "MetaData",
                "FullyQualifiedName",
                "Level",
                "BalanceWithJobs",
                "domain",
            ],
        ),
        _ => (
            &[
                "Name",
                "Type",
                "Description",
                "Active",
                "SubItem",
                "ParentRef",
                "Taxable",
                "UnitPrice",
                "PurchaseDesc",
                "PurchaseCost",
                "IncomeAccountRef",
                "ExpenseAccountRef",
                "AssetAccountRef",
                "TrackQtyOnHand",
                "QtyOnHand",
                "InvStartDate",
                "Sku",
                "SalesTaxCodeRef",
                "PurchaseTaxCodeRef",
                "ReorderPoint",
                "PrefVendorRef",
                "ItemGroupDetail",
                "ClassRef",
            ],
            &["MetaData", "FullyQualifiedName", "Level", "domain"],
        ),
    }
}

/// The unique name of a name-list record as it is now (`DisplayName` of people, `Name` of the rest).
fn name_of(dataset: &Dataset, entity: &str, index: u64) -> Option<String> {
    let field = if entity == "Item" {
        "Name"
    } else {
        "DisplayName"
    };
    match dataset.written.get(&index) {
        Some(written) => match written.fields.get(field) {
            Some(Value::String(name)) => Some(name.clone()),
            Some(_) => None,
            None => (!written.created).then(|| format!("{entity} {index}")),
        },
        None => Some(format!("{entity} {index}")),
    }
}

/// A create or an update of a customer or an item (see the module).
fn write(state: &mut State, entity: &'static str, body: &[u8]) -> HttpResponse {
    let refuse = |code: &str, message: &str, detail: &str| {
        fault(
            StatusCode::BAD_REQUEST,
            "ValidationFault",
            message,
            detail,
            code,
        )
    };
    let Ok(Value::Object(mut fields)) = serde_json::from_slice::<Value>(body) else {
        return refuse(
            "2010",
            "Request has invalid or unsupported property",
            "The request body is not a JSON object.",
        );
    };
    let (writable, ignored) = properties(entity);
    if let Some(unknown) = fields.keys().find(|k| {
        !writable.contains(&k.as_str())
            && !ignored.contains(&k.as_str())
            && !["Id", "SyncToken", "sparse"].contains(&k.as_str())
    }) {
        return refuse(
            "2010",
            "Request has invalid or unsupported property",
            &format!("Property Name:{unknown} specified is unsupported or invalid"),
        );
    }
    fields.retain(|k, _| !ignored.contains(&k.as_str()));
    let data_type = if entity == "Item" {
        "items"
    } else {
        "customers"
    };
    let id = fields.remove("Id");
    let token = fields.remove("SyncToken");
    let sparse = fields.remove("sparse").and_then(|v| v.as_bool()) == Some(true);
    let index = match &id {
        None => None,
        Some(id) => {
            let dataset = state.dataset("quickbooks", data_type);
            let found = text(id)
                .and_then(|id| id.parse::<u64>().ok())
                .and_then(|id| id.checked_sub(1))
                .filter(|i| dataset.exists(*i));
            let Some(index) = found else {
                return refuse(
                    "610",
                    "Object Not Found",
                    "Object Not Found : Something you're trying to use has been made inactive. \
                     Check the fields with accounts, customers, items, vendors or employees.",
                );
            };
            let current = sync_token(dataset, index);
            match token.as_ref().and_then(text) {
                None => {
                    return refuse(
                        "2020",
                        "Required param missing, need to supply the required value for the API",
                        "Required parameter SyncToken is missing in the request",
                    )
                }
                Some(sent) if sent.parse::<u64>().ok() != Some(current) => return refuse(
                    "5010",
                    "Stale Object Error",
                    "Stale Object Error : You and Emulated User were working on this at the same \
                         time. Emulated User finished before you did, so your work was not saved.",
                ),
                Some(_) => Some((index, current)),
            }
        }
    };
    // The unique name: a person's DisplayName (made of the name's parts when not given), an item's Name.
    let name_field = if entity == "Item" {
        "Name"
    } else {
        "DisplayName"
    };
    if index.is_none() && entity == "Customer" && !fields.contains_key("DisplayName") {
        let parts: Vec<&str> = ["Title", "GivenName", "MiddleName", "FamilyName", "Suffix"]
            .iter()
            .filter_map(|f| fields.get(*f).and_then(Value::as_str))
            .filter(|p| !p.is_empty())
            .collect();
        let name = if parts.is_empty() {
            fields
                .get("CompanyName")
                .and_then(Value::as_str)
                .map(str::to_owned)
        } else {
            Some(parts.join(" "))
        };
        if let Some(name) = name {
            fields.insert("DisplayName".into(), Value::String(name));
        }
    }
    let named = fields
        .get(name_field)
        .and_then(Value::as_str)
        .is_some_and(|n| !n.trim().is_empty());
    if index.is_none() && !named {
        return refuse(
            "2020",
            "Required param missing, need to supply the required value for the API",
            &format!("Required parameter {name_field} is missing in the request"),
        );
    }
    if let Some(Value::String(name)) = fields.get(name_field) {
        let wanted = name.trim().to_lowercase();
        let others: &[(&str, &str)] = if entity == "Item" {
            &[("Item", "items")]
        } else {
            &[
                ("Customer", "customers"),
                ("Vendor", "vendors"),
                ("Employee", "employees"),
            ]
        };
        for (other, data_type) in others {
            let dataset = state.dataset("quickbooks", data_type);
            let taken = (0..dataset.count).any(|i| {
                dataset.visible(i)
                    && !(*other == entity && index.is_some_and(|(at, _)| at == i))
                    && name_of(dataset, other, i).is_some_and(|n| n.trim().to_lowercase() == wanted)
            });
            if taken {
                let what = if entity == "Item" {
                    "Another product or service is already using this name."
                } else {
                    "Another customer, vendor or employee is already using this name."
                };
                return refuse(
                    "6240",
                    "Duplicate Name Exists Error",
                    &format!(
                        "The name supplied already exists. : {what} Please use a different name."
                    ),
                );
            }
        }
    }
    if entity == "Item" && index.is_none() {
        let has = |f: &str| fields.get(f).is_some_and(|v| !v.is_null());
        let kind = fields
            .get("Type")
            .and_then(Value::as_str)
            .unwrap_or("NonInventory");
        let required: &[&str] = match kind {
            "Inventory" => &[
                "IncomeAccountRef",
                "ExpenseAccountRef",
                "AssetAccountRef",
                "QtyOnHand",
                "InvStartDate",
                "TrackQtyOnHand",
            ],
            "Service" | "NonInventory" => &["IncomeAccountRef"],
            _ => &[],
        };
        if let Some(missing) = required.iter().find(|f| !has(f)) {
            return refuse(
                "6000",
                "A business validation error has occurred while processing your request",
                &format!(
                    "Business Validation Error: {missing} is required for an item of type {kind}."
                ),
            );
        }
    }
    let index = match index {
        Some((index, current)) => {
            fields.insert("SyncToken".into(), json!((current + 1).to_string()));
            if !sparse {
                // A full update: the writable properties not sent are cleared.
                for field in writable {
                    fields.entry(*field).or_insert(Value::Null);
                }
            }
            state.update_record("quickbooks", data_type, index, fields);
            index
        }
        None => {
            fields.insert("SyncToken".into(), json!("0"));
            fields.entry("Active").or_insert(json!(true));
            state.create_record("quickbooks", data_type, fields)
        }
    };
    let dataset = state.dataset("quickbooks", data_type);
    HttpResponse::Ok().json(json!({entity: record(dataset, entity, true, index), "time": now()}))
}

/// A string's text or a number's decimal text (QuickBooks sends ids and tokens as strings; numbers are
/// taken as well).
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A record's current `SyncToken`: as the last write through the API left it, else 0 for a record never
/// changed and 1 for one changed since.
fn sync_token(dataset: &Dataset, index: u64) -> u64 {
    dataset
        .written
        .get(&index)
        .and_then(|w| w.fields.get("SyncToken"))
        .and_then(Value::as_str)
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| u64::from(dataset.updated_ms(index) != dataset.created_ms(index)))
}

fn record(dataset: &Dataset, entity: &str, name_list: bool, index: u64) -> Value {
    let mut record = json!({
        "Id": (index + 1).to_string(),
        "SyncToken": sync_token(dataset, index).to_string(),
        "domain": "QBO",
        "sparse": false,
        "MetaData": {"CreateTime": time(dataset.created_ms(index)),
                     "LastUpdatedTime": time(dataset.updated_ms(index))},
    });
    let extra = if name_list {
        let name = format!("{entity} {index}");
        let mut fields = json!({"Name": name, "Active": index % 10 != 9});
        match entity {
            "Customer" | "Vendor" | "Employee" => {
                fields = json!({"DisplayName": name, "GivenName": entity, "FamilyName": index.to_string(),
                    "PrimaryEmailAddr": {"Address": format!("{}{index}@example.test", entity.to_lowercase())},
                    "Balance": 0, "Active": index % 10 != 9});
            }
            "Account" => {
                fields["AccountType"] = json!("Expense");
                fields["Classification"] = json!("Expense");
                fields["CurrentBalance"] = json!(0);
            }
            "Item" => {
                fields["Type"] = json!("Service");
                fields["UnitPrice"] = json!(100 + index % 50);
                fields["IncomeAccountRef"] =
                    json!({"value": "79", "name": "Sales of Product Income"});
            }
            _ => {}
        }
        // As the API's writes left it.
        Value::Object(dataset.fields(index, || fields))
    } else {
        let date = DateTime::<Utc>::from_timestamp_millis(dataset.created_ms(index))
            .unwrap()
            .with_timezone(&company_offset())
            .format("%Y-%m-%d")
            .to_string();
        let amount = 100.0 + (index % 97) as f64 * 2.5;
        json!({"DocNumber": format!("{}", 1000 + index), "TxnDate": date, "TotalAmt": amount,
            "CurrencyRef": {"value": "USD", "name": "United States Dollar"},
            "Line": [{"Id": "1", "LineNum": 1, "Amount": amount, "DetailType": "SalesItemLineDetail",
                      "SalesItemLineDetail": {"ItemRef": {"value": "1", "name": "Services"}}}],
            "PrivateNote": format!("{entity} emulated {index}")})
    };
    if let (Value::Object(record), Value::Object(extra)) = (&mut record, extra) {
        record.extend(extra);
    }
    record
}

/// quickbooks in the emulation's registry (`crate::EMULATIONS`).
pub(crate) const EMULATION: crate::Emulation = crate::Emulation {
    id: "quickbooks",
    base_path: || format!("/quickbooks/v3/company/{REALM_ID}"),
    serve: |state, call| {
        answer(
            state, call.req, call.rest, call.query, call.body, call.fault,
        )
    },
    rate_limited_body: || error_body(StatusCode::TOO_MANY_REQUESTS),
    error_body,
    record_id: |_, index| (index + 1).to_string(),
    newest_first: false,
    listed: |_, _| true,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_parse_as_the_documented_grammar() {
        let s = parse(
            "SELECT * FROM Customer WHERE Active IN (true, false) AND Metadata.LastUpdatedTime >= \
             '2024-01-02T03:04:05.000Z' ORDERBY Metadata.LastUpdatedTime STARTPOSITION 1001 MAXRESULTS 1000",
        )
        .ok()
        .unwrap();
        assert_eq!(s.entity, "Customer");
        assert_eq!(s.conditions.len(), 2);
        assert_eq!((s.start, s.max, s.order), (1001, 1000, (true, false)));
        let s = parse("select count(*) from invoice").ok().unwrap();
        assert!(s.count);
        assert_eq!((s.start, s.max), (1, 100));
        for bad in [
            "SELECT * FROM Customer WHERE DisplayName LIKE 'A%'",
            "SELECT * FROM Customer STARTPOSITION x",
            "SELECT Id FROM Customer",
            "SELECT * FROM Customer WHERE Metadata.LastUpdatedTime >= 2024-01-01",
            "SELECT * FROM Customer ORDERBY DisplayName",
            "SELECT * FROM Customer WHERE 'unterminated",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    fn answered(response: HttpResponse) -> (u16, Value) {
        let status = response.status().as_u16();
        let body = actix_web::body::to_bytes(response.into_body());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let body = runtime.block_on(body).ok().unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[test]
    fn writes_create_update_sparsely_and_refuse_as_intuit_documents() {
        let mut state = State::default();
        state.seed("quickbooks", "customers", 3);
        let post = |state: &mut State, entity, body: Value| {
            answered(write(state, entity, body.to_string().as_bytes()))
        };
        // A create: 200 with the new record, SyncToken 0.
        let (status, created) = post(
            &mut state,
            "Customer",
            json!({"DisplayName": "Ada Lovelace", "GivenName": "Ada"}),
        );
        assert_eq!(status, 200, "{created}");
        assert_eq!(created["Customer"]["Id"], "4");
        assert_eq!(created["Customer"]["SyncToken"], "0");
        assert_eq!(created["Customer"]["Active"], true);
        // A name in use, without case: 6240.
        let (status, refused) = post(&mut state, "Customer", json!({"DisplayName": "customer 1"}));
        assert_eq!(
            (status, refused["Fault"]["Error"][0]["code"].clone()),
            (400, json!("6240"))
        );
        // A sparse update with the current SyncToken changes the fields sent and moves the token on.
        let (status, updated) = post(
            &mut state,
            "Customer",
            json!({"Id": "4", "SyncToken": "0", "sparse": true, "FamilyName": "Lovelace"}),
        );
        assert_eq!(status, 200, "{updated}");
        assert_eq!(updated["Customer"]["SyncToken"], "1");
        assert_eq!(updated["Customer"]["GivenName"], "Ada");
        assert_eq!(updated["Customer"]["FamilyName"], "Lovelace");
        // The token it had is stale now: 5010; none at all: 2020.
        let (status, stale) = post(
            &mut state,
            "Customer",
            json!({"Id": "4", "SyncToken": "0", "sparse": true, "GivenName": "Bob"}),
        );
        assert_eq!(
            (status, stale["Fault"]["Error"][0]["code"].clone()),
            (400, json!("5010"))
        );
        assert_eq!(stale["Fault"]["Error"][0]["Message"], "Stale Object Error");
        let (status, _) = post(&mut state, "Customer", json!({"Id": "4", "sparse": true}));
        assert_eq!(status, 400);
        // A full update clears what it does not send.
        let (status, full) = post(
            &mut state,
            "Customer",
            json!({"Id": "4", "SyncToken": "1", "DisplayName": "Ada Lovelace"}),
        );
        assert_eq!(status, 200, "{full}");
        assert!(full["Customer"].get("GivenName").is_none(), "{full}");
        // Deactivated, it leaves the active list and comes back when made active again.
        let (status, _) = post(
            &mut state,
            "Customer",
            json!({"Id": "2", "SyncToken": "0", "sparse": true, "Active": false}),
        );
        assert_eq!(status, 200);
        assert!(!is_active(state.dataset("quickbooks", "customers"), 1));
        // Unknown properties and ids are refused.
        let (status, refused) = post(
            &mut state,
            "Customer",
            json!({"DisplayName": "X", "Nope": 1}),
        );
        assert_eq!(
            (status, refused["Fault"]["Error"][0]["code"].clone()),
            (400, json!("2010"))
        );
        let (status, refused) = post(
            &mut state,
            "Customer",
            json!({"Id": "99", "SyncToken": "0", "sparse": true}),
        );
        assert_eq!(
            (status, refused["Fault"]["Error"][0]["code"].clone()),
            (400, json!("610"))
        );
        // An inventory item needs its accounts, quantity and start date; a service item an income account.
        let (status, refused) = post(
            &mut state,
            "Item",
            json!({"Name": "Widget", "Type": "Inventory", "IncomeAccountRef": {"value": "79"}}),
        );
        assert_eq!(
            (status, refused["Fault"]["Error"][0]["code"].clone()),
            (400, json!("6000"))
        );
        let (status, item) = post(
            &mut state,
            "Item",
            json!({"Name": "Widget", "Type": "Inventory", "TrackQtyOnHand": true, "QtyOnHand": 10,
                   "InvStartDate": "2024-01-01", "IncomeAccountRef": {"value": "79"},
                   "ExpenseAccountRef": {"value": "80"}, "AssetAccountRef": {"value": "81"}}),
        );
        assert_eq!(status, 200, "{item}");
        assert_eq!(item["Item"]["Id"], "1");
        let (status, _) = post(
            &mut state,
            "Item",
            json!({"Name": "Hours", "Type": "Service"}),
        );
        assert_eq!(status, 400);
    }

    #[test]
    fn times_are_read_in_each_form_and_written_in_the_company_offset() {
        let z = literal_time("2024-01-02T08:00:00Z").unwrap();
        assert_eq!(literal_time("2024-01-02T00:00:00-08:00"), Some(z));
        assert_eq!(literal_time("2024-01-02T00:00:00"), Some(z));
        assert_eq!(literal_time("2024-01-02"), Some(z));
        assert_eq!(time(z), "2024-01-02T00:00:00-08:00");
    }
}
