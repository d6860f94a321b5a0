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
        let is_active = !name_list || i % 10 != 9;
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

fn record(dataset: &Dataset, entity: &str, name_list: bool, index: u64) -> Value {
    let mut record = json!({
        "Id": (index + 1).to_string(),
        "SyncToken": u8::from(dataset.updated_ms(index) != dataset.created_ms(index)).to_string(),
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
            }
            _ => {}
        }
        fields
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

    #[test]
    fn times_are_read_in_each_form_and_written_in_the_company_offset() {
        let z = literal_time("2024-01-02T08:00:00Z").unwrap();
        assert_eq!(literal_time("2024-01-02T00:00:00-08:00"), Some(z));
        assert_eq!(literal_time("2024-01-02T00:00:00"), Some(z));
        assert_eq!(literal_time("2024-01-02"), Some(z));
        assert_eq!(time(z), "2024-01-02T00:00:00-08:00");
    }
}
