//! QuickBooks Online Accounting API v3 (https://developer.intuit.com/app/developer/qbo/docs/api/accounting/all-entities/account).
//!
//! Its data types are in the catalog but not listed yet: sources cannot select them.

use super::*;

pub(super) const PLATFORM: Platform = Platform {
    id: "quickbooks",
    name: "QuickBooks Online",
    category: "accounting",
    auth_types: OAUTH,
    credential_fields: &[],
    data_types: &[
        DataType::not_listed("company_info", "Company settings"),
        DataType::not_listed("accounts", "Chart of accounts"),
        DataType::not_listed("customers", "Customers"),
        DataType::not_listed("vendors", "Vendors"),
        DataType::not_listed("employees", "Employees"),
        DataType::not_listed("items", "Products and services"),
        DataType::not_listed("invoices", "Invoices"),
        DataType::not_listed("estimates", "Estimates"),
        DataType::not_listed("sales_receipts", "Sales receipts"),
        DataType::not_listed("payments", "Customer payments"),
        DataType::not_listed("credit_memos", "Credit memos"),
        DataType::not_listed("bills", "Vendor bills"),
        DataType::not_listed("bill_payments", "Payments of vendor bills"),
        DataType::not_listed("purchases", "Expenses, checks and credit card charges"),
        DataType::not_listed("deposits", "Bank deposits"),
        DataType::not_listed("transfers", "Transfers between accounts"),
        DataType::not_listed("journal_entries", "Journal entries"),
        DataType::not_listed("tax_codes", "Sales tax codes"),
        DataType::not_listed("classes", "Classes for tracking"),
        DataType::not_listed("departments", "Departments (locations) for tracking"),
    ],
    // Intuit has no read-only accounting scope.
    oauth_scopes: &["com.intuit.quickbooks.accounting"],
    api_base_url: "https://quickbooks.api.intuit.com/v3/company/{realmId}",
    api_key_auth: None,
    // The API answers XML unless asked for JSON.
    api_headers: &[("Accept", "application/json")],
    url_params: &[UrlParam::FromOauth { name: "realmId" }],
    identity: Identity {
        // The realm (company) id is the account; the body's `Id` is the CompanyInfo record's.
        id_setting: Some("realmId"),
        ..Identity::get("/companyinfo/{realmId}", &[], &["/CompanyInfo/CompanyName"])
    },
    oauth: Some(Oauth {
        // Intuit requires the client's credentials as HTTP Basic, and names the company (realm) in the
        // callback, not in the token answer.
        client_auth: ClientAuth::Basic,
        callback_settings: &["realmId"],
        ..Oauth::new(
            "https://appcenter.intuit.com/connect/oauth2",
            "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer",
        )
    }),
    rate: DefaultRate::per_second(8.0),
    error_messages: &["/Fault/Error/0/Detail", "/Fault/Error/0/Message"],
};
