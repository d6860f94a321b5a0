//! The twelve platforms ListBackup backs up, described from their real public APIs.
//!
//! Everything here is public knowledge: endpoints, header formats, scope strings. Client ids and secrets are
//! never part of the catalog; they come from `LISTBACKUP_PLATFORM_<ID>_CLIENT_{ID,SECRET}` at run time.

use super::{
    ApiAuth, AuthType, BasicPart, CredentialField, CredentialFieldType, DataType, HttpMethod,
    OauthEndpoints, Platform, TestEndpoint, UrlParam,
};

const OAUTH: &[AuthType] = &[AuthType::Oauth2];
const API_KEY: &[AuthType] = &[AuthType::ApiKey];
const BOTH: &[AuthType] = &[AuthType::Oauth2, AuthType::ApiKey];

/// OAuth access tokens of most platforms travel as `Authorization: Bearer`.
const BEARER_ACCESS_TOKEN: ApiAuth = ApiAuth::Bearer {
    token_field: super::OAUTH_ACCESS_TOKEN,
};

const fn dt(name: &'static str, description: &'static str) -> DataType {
    DataType { name, description }
}

/// A required secret field (encrypted in the vault, never shown again).
const fn secret(name: &'static str, label: &'static str) -> CredentialField {
    CredentialField {
        name,
        label,
        field_type: CredentialFieldType::String,
        required: true,
        secret: true,
    }
}

/// A required non-secret field (an account URL, a subdomain, a login e-mail).
const fn plain(
    name: &'static str,
    label: &'static str,
    field_type: CredentialFieldType,
) -> CredentialField {
    CredentialField {
        name,
        label,
        field_type,
        required: true,
        secret: false,
    }
}

const fn get(path: &'static str) -> TestEndpoint {
    TestEndpoint {
        method: HttpMethod::Get,
        path,
    }
}

pub static CATALOG: &[Platform] = &[
    Platform {
        id: "keap",
        name: "Keap",
        category: "crm",
        auth_types: BOTH,
        credential_fields: &[secret(
            "apiKey",
            "Personal access token or service account key",
        )],
        data_types: &[
            dt(
                "contacts",
                "People in the CRM with their e-mails, phones, addresses and custom fields",
            ),
            dt("companies", "Companies contacts belong to"),
            dt(
                "opportunities",
                "Sales opportunities and their pipeline stage",
            ),
            dt("orders", "E-commerce orders with their line items"),
            dt("subscriptions", "Recurring billing subscriptions"),
            dt("transactions", "Payment transactions"),
            dt("products", "Products and their subscription plans"),
            dt("tags", "Tags and their categories"),
            dt("tasks", "Tasks assigned to users"),
            dt("notes", "Notes attached to contacts"),
            dt("emails", "E-mails sent to and received from contacts"),
            dt("appointments", "Calendar appointments"),
            dt("campaigns", "Automation campaigns and their sequences"),
            dt("users", "Users of the Keap application"),
        ],
        // Keap has a single OAuth scope.
        oauth_scopes: &["full"],
        api_base_url: "https://api.infusionsoft.com/crm/rest/v1",
        // Personal access tokens and service account keys share this header.
        api_key_auth: Some(ApiAuth::Header {
            header: "X-Keap-API-Key",
            token_field: "apiKey",
        }),
        api_headers: &[],
        url_params: &[],
        // Works for both key kinds; `/oauth/connect/userinfo` needs a user context a service key lacks.
        test_endpoint: get("/account/profile"),
        oauth: Some(OauthEndpoints {
            authorize_url: "https://accounts.infusionsoft.com/app/oauth/authorize",
            token_url: "https://api.infusionsoft.com/token",
            api_auth: BEARER_ACCESS_TOKEN,
        }),
    },
    Platform {
        id: "stripe",
        name: "Stripe",
        category: "payments",
        auth_types: BOTH,
        credential_fields: &[secret(
            "secretKey",
            "Secret or restricted API key (sk_… / rk_…)",
        )],
        data_types: &[
            dt("customers", "Customers and their default payment settings"),
            dt("charges", "Charges made against payment sources"),
            dt("invoices", "Invoices and their line items"),
            dt("subscriptions", "Recurring subscriptions"),
            dt("products", "Products sold"),
            dt("prices", "Prices of products, one-off and recurring"),
            dt("payment_intents", "Payment intents and their status"),
            dt("refunds", "Refunds of charges"),
            dt("disputes", "Disputes (chargebacks) raised by card holders"),
            dt("payouts", "Payouts to the bank account"),
            dt(
                "balance_transactions",
                "Every movement of the Stripe balance",
            ),
            dt("events", "The account's event log (last 30 days)"),
            dt("coupons", "Discount coupons"),
            dt("credit_notes", "Credit notes issued against invoices"),
        ],
        // Stripe Connect OAuth: read-only access to the connected account.
        oauth_scopes: &["read_only"],
        api_base_url: "https://api.stripe.com/v1",
        api_key_auth: Some(ApiAuth::Bearer {
            token_field: "secretKey",
        }),
        api_headers: &[],
        url_params: &[],
        test_endpoint: get("/account"),
        oauth: Some(OauthEndpoints {
            authorize_url: "https://connect.stripe.com/oauth/authorize",
            token_url: "https://connect.stripe.com/oauth/token",
            api_auth: BEARER_ACCESS_TOKEN,
        }),
    },
    Platform {
        id: "hubspot",
        name: "HubSpot",
        category: "crm",
        auth_types: BOTH,
        credential_fields: &[secret("accessToken", "Private app access token")],
        data_types: &[
            dt("contacts", "Contact records with all properties"),
            dt("companies", "Company records"),
            dt("deals", "Deals and their pipeline stage"),
            dt("tickets", "Service tickets"),
            dt("products", "Product library"),
            dt("line_items", "Line items of deals and quotes"),
            dt("quotes", "Sales quotes"),
            dt("owners", "Users who own CRM records"),
            dt("pipelines", "Deal and ticket pipelines with their stages"),
            dt("notes", "Notes logged on records"),
            dt("calls", "Logged calls"),
            dt("emails", "Logged e-mails"),
            dt("meetings", "Logged meetings"),
            dt("tasks", "Tasks"),
        ],
        oauth_scopes: &[
            "oauth",
            "crm.objects.contacts.read",
            "crm.objects.companies.read",
            "crm.objects.deals.read",
            "crm.objects.owners.read",
            "crm.objects.quotes.read",
            "crm.objects.line_items.read",
            "e-commerce",
            "tickets",
            "sales-email-read",
        ],
        api_base_url: "https://api.hubapi.com",
        api_key_auth: Some(ApiAuth::Bearer {
            token_field: "accessToken",
        }),
        api_headers: &[],
        url_params: &[],
        test_endpoint: get("/account-info/v3/details"),
        oauth: Some(OauthEndpoints {
            authorize_url: "https://app.hubspot.com/oauth/authorize",
            token_url: "https://api.hubapi.com/oauth/v1/token",
            api_auth: BEARER_ACCESS_TOKEN,
        }),
    },
    Platform {
        id: "shopify",
        name: "Shopify",
        category: "ecommerce",
        auth_types: BOTH,
        credential_fields: &[
            plain(
                "shop",
                "Shop domain (your-store.myshopify.com)",
                CredentialFieldType::String,
            ),
            secret("adminApiAccessToken", "Admin API access token (shpat_…)"),
        ],
        data_types: &[
            dt("shop", "Store settings"),
            dt("customers", "Customers and their addresses"),
            dt("orders", "Orders with line items, fulfillments and refunds"),
            dt("draft_orders", "Draft orders"),
            dt("products", "Products with variants and images"),
            dt("custom_collections", "Manually curated collections"),
            dt("smart_collections", "Rule-based collections"),
            dt("inventory_levels", "Stock per inventory item and location"),
            dt("locations", "Store locations"),
            dt("price_rules", "Price rules behind discounts"),
            dt("discount_codes", "Discount codes of price rules"),
            dt("pages", "Online store pages"),
            dt("blogs", "Online store blogs"),
            dt("articles", "Blog articles"),
        ],
        oauth_scopes: &[
            "read_customers",
            "read_orders",
            // Without it only the last 60 days of orders are visible: a backup wants them all.
            "read_all_orders",
            "read_draft_orders",
            "read_products",
            "read_inventory",
            "read_locations",
            "read_price_rules",
            "read_discounts",
            "read_content",
            "read_fulfillments",
        ],
        api_base_url: "https://{shop}/admin/api/2024-10",
        api_key_auth: Some(ApiAuth::Header {
            header: "X-Shopify-Access-Token",
            token_field: "adminApiAccessToken",
        }),
        api_headers: &[],
        url_params: &[],
        test_endpoint: get("/shop.json"),
        oauth: Some(OauthEndpoints {
            authorize_url: "https://{shop}/admin/oauth/authorize",
            token_url: "https://{shop}/admin/oauth/access_token",
            api_auth: ApiAuth::Header {
                header: "X-Shopify-Access-Token",
                token_field: super::OAUTH_ACCESS_TOKEN,
            },
        }),
    },
    Platform {
        id: "quickbooks",
        name: "QuickBooks Online",
        category: "accounting",
        auth_types: OAUTH,
        credential_fields: &[],
        data_types: &[
            dt("company_info", "Company settings"),
            dt("accounts", "Chart of accounts"),
            dt("customers", "Customers"),
            dt("vendors", "Vendors"),
            dt("employees", "Employees"),
            dt("items", "Products and services"),
            dt("invoices", "Invoices"),
            dt("estimates", "Estimates"),
            dt("sales_receipts", "Sales receipts"),
            dt("payments", "Customer payments"),
            dt("credit_memos", "Credit memos"),
            dt("bills", "Vendor bills"),
            dt("bill_payments", "Payments of vendor bills"),
            dt("purchases", "Expenses, checks and credit card charges"),
            dt("deposits", "Bank deposits"),
            dt("transfers", "Transfers between accounts"),
            dt("journal_entries", "Journal entries"),
            dt("tax_codes", "Sales tax codes"),
            dt("classes", "Classes for tracking"),
            dt("departments", "Departments (locations) for tracking"),
        ],
        // Intuit has no read-only accounting scope.
        oauth_scopes: &["com.intuit.quickbooks.accounting"],
        api_base_url: "https://quickbooks.api.intuit.com/v3/company/{realmId}",
        api_key_auth: None,
        // The API answers XML unless asked for JSON.
        api_headers: &[("Accept", "application/json")],
        url_params: &[UrlParam::FromOauth { name: "realmId" }],
        test_endpoint: get("/companyinfo/{realmId}"),
        oauth: Some(OauthEndpoints {
            authorize_url: "https://appcenter.intuit.com/connect/oauth2",
            token_url: "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer",
            api_auth: BEARER_ACCESS_TOKEN,
        }),
    },
    Platform {
        id: "google",
        name: "Google Drive",
        category: "file_storage",
        auth_types: OAUTH,
        credential_fields: &[],
        data_types: &[
            dt(
                "files",
                "Files and folders in My Drive, with content (Google formats exported)",
            ),
            dt("shared_drives", "Shared drives the user belongs to"),
            dt("permissions", "Who each file is shared with"),
            dt("revisions", "Revision history of files"),
            dt("comments", "Comments and replies on files"),
            dt("gmail_messages", "Gmail messages (raw RFC 822)"),
            dt("gmail_labels", "Gmail labels"),
        ],
        oauth_scopes: &[
            "openid",
            "email",
            "https://www.googleapis.com/auth/drive.readonly",
            "https://www.googleapis.com/auth/gmail.readonly",
        ],
        api_base_url: "https://www.googleapis.com",
        api_key_auth: None,
        api_headers: &[],
        url_params: &[],
        test_endpoint: get("/oauth2/v3/userinfo"),
        oauth: Some(OauthEndpoints {
            authorize_url: "https://accounts.google.com/o/oauth2/v2/auth",
            token_url: "https://oauth2.googleapis.com/token",
            api_auth: BEARER_ACCESS_TOKEN,
        }),
    },
    Platform {
        id: "dropbox",
        name: "Dropbox",
        category: "file_storage",
        auth_types: OAUTH,
        credential_fields: &[],
        data_types: &[
            dt("files", "Files and folders with content"),
            dt("file_revisions", "Previous revisions of files"),
            dt("shared_folders", "Shared folders and their members"),
            dt("shared_links", "Shared links and their settings"),
            dt("file_requests", "File requests"),
        ],
        oauth_scopes: &[
            "account_info.read",
            "files.metadata.read",
            "files.content.read",
            "sharing.read",
            "file_requests.read",
        ],
        api_base_url: "https://api.dropboxapi.com",
        api_key_auth: None,
        api_headers: &[],
        url_params: &[],
        test_endpoint: TestEndpoint {
            method: HttpMethod::Post,
            path: "/2/users/get_current_account",
        },
        oauth: Some(OauthEndpoints {
            authorize_url: "https://www.dropbox.com/oauth2/authorize",
            token_url: "https://api.dropboxapi.com/oauth2/token",
            api_auth: BEARER_ACCESS_TOKEN,
        }),
    },
    Platform {
        id: "box",
        name: "Box",
        category: "file_storage",
        auth_types: OAUTH,
        credential_fields: &[],
        data_types: &[
            dt("files", "Files with content"),
            dt("folders", "Folder tree"),
            dt("file_versions", "Previous versions of files"),
            dt("collaborations", "Who has access to each folder or file"),
            dt("comments", "Comments on files"),
            dt("tasks", "Tasks on files"),
            dt("web_links", "Bookmarks stored in folders"),
        ],
        oauth_scopes: &["root_readonly"],
        api_base_url: "https://api.box.com/2.0",
        api_key_auth: None,
        api_headers: &[],
        url_params: &[],
        test_endpoint: get("/users/me"),
        oauth: Some(OauthEndpoints {
            authorize_url: "https://account.box.com/api/oauth2/authorize",
            token_url: "https://api.box.com/oauth2/token",
            api_auth: BEARER_ACCESS_TOKEN,
        }),
    },
    Platform {
        id: "gohighlevel",
        name: "HighLevel",
        category: "crm",
        auth_types: BOTH,
        credential_fields: &[
            secret(
                "privateIntegrationToken",
                "Private integration token (pit-…)",
            ),
            plain(
                "locationId",
                "Sub-account (location) id",
                CredentialFieldType::String,
            ),
        ],
        data_types: &[
            dt("contacts", "Contacts with custom fields"),
            dt("opportunities", "Opportunities"),
            dt("pipelines", "Opportunity pipelines and stages"),
            dt("calendars", "Calendars"),
            dt("appointments", "Calendar events and appointments"),
            dt("conversations", "Conversations with contacts"),
            dt("messages", "Messages of conversations (SMS, e-mail, chat)"),
            dt("users", "Users of the sub-account"),
            dt("tags", "Contact tags"),
            dt("custom_fields", "Custom field definitions"),
            dt("forms", "Forms"),
            dt("form_submissions", "Form submissions"),
            dt("surveys", "Surveys"),
            dt("invoices", "Invoices"),
            dt("products", "Products"),
            dt("workflows", "Workflows (names and status)"),
            dt("campaigns", "Campaigns"),
        ],
        oauth_scopes: &[
            "locations.readonly",
            "contacts.readonly",
            "opportunities.readonly",
            "calendars.readonly",
            "calendars/events.readonly",
            "conversations.readonly",
            "conversations/message.readonly",
            "users.readonly",
            "locations/tags.readonly",
            "locations/customFields.readonly",
            "forms.readonly",
            "surveys.readonly",
            "invoices.readonly",
            "products.readonly",
            "workflows.readonly",
            "campaigns.readonly",
        ],
        api_base_url: "https://services.leadconnectorhq.com",
        api_key_auth: Some(ApiAuth::Bearer {
            token_field: "privateIntegrationToken",
        }),
        // API v2 refuses requests without a version header.
        api_headers: &[("Version", "2021-07-28")],
        url_params: &[],
        // "Get Sub-Account": needs the `locations.readonly` scope the token is created with.
        test_endpoint: get("/locations/{locationId}"),
        oauth: Some(OauthEndpoints {
            authorize_url: "https://marketplace.gohighlevel.com/oauth/chooselocation",
            token_url: "https://services.leadconnectorhq.com/oauth/token",
            api_auth: BEARER_ACCESS_TOKEN,
        }),
    },
    Platform {
        id: "mailchimp",
        name: "Mailchimp",
        category: "marketing",
        auth_types: API_KEY,
        credential_fields: &[secret(
            "apiKey",
            "API key (ends with the data centre, e.g. -us21)",
        )],
        data_types: &[
            dt("audiences", "Audiences (lists) and their settings"),
            dt(
                "audience_members",
                "Members of each audience with merge fields and status",
            ),
            dt("segments", "Segments and tags of audiences"),
            dt("merge_fields", "Merge field definitions of audiences"),
            dt(
                "interest_categories",
                "Interest categories (groups) of audiences",
            ),
            dt("campaigns", "Campaigns with their content"),
            dt("campaign_reports", "Campaign reports"),
            dt("templates", "E-mail templates"),
            dt("automations", "Classic automations"),
            dt("landing_pages", "Landing pages"),
            dt("ecommerce_stores", "Connected e-commerce stores"),
        ],
        oauth_scopes: &[],
        api_base_url: "https://{dc}.api.mailchimp.com/3.0",
        // Mailchimp ignores the Basic user name.
        api_key_auth: Some(ApiAuth::Basic {
            user: BasicPart::Literal("anystring"),
            password: BasicPart::Field("apiKey"),
        }),
        api_headers: &[],
        url_params: &[UrlParam::SuffixOf {
            name: "dc",
            field: "apiKey",
        }],
        test_endpoint: get("/ping"),
        oauth: None,
    },
    Platform {
        id: "activecampaign",
        name: "ActiveCampaign",
        category: "marketing",
        auth_types: API_KEY,
        credential_fields: &[
            plain(
                "apiUrl",
                "API URL (https://<account>.api-us1.com)",
                CredentialFieldType::Url,
            ),
            secret("apiKey", "API key"),
        ],
        data_types: &[
            dt("contacts", "Contacts with custom field values"),
            dt("accounts", "Accounts (companies)"),
            dt("deals", "Deals"),
            dt("lists", "Lists"),
            dt("tags", "Tags"),
            dt("contact_tags", "Which contact carries which tag"),
            dt("custom_fields", "Custom field definitions"),
            dt("campaigns", "Campaigns"),
            dt("messages", "Campaign messages"),
            dt("automations", "Automations"),
            dt("notes", "Notes"),
            dt("tasks", "Deal and contact tasks"),
            dt("users", "Users of the account"),
        ],
        oauth_scopes: &[],
        api_base_url: "{apiUrl}/api/3",
        api_key_auth: Some(ApiAuth::Header {
            header: "Api-Token",
            token_field: "apiKey",
        }),
        api_headers: &[],
        url_params: &[],
        test_endpoint: get("/users/me"),
        oauth: None,
    },
    Platform {
        id: "zendesk",
        name: "Zendesk",
        category: "support",
        auth_types: API_KEY,
        credential_fields: &[
            plain(
                "subdomain",
                "Subdomain (<subdomain>.zendesk.com)",
                CredentialFieldType::String,
            ),
            plain("email", "Agent e-mail", CredentialFieldType::Email),
            secret("apiToken", "API token"),
        ],
        data_types: &[
            dt("tickets", "Tickets"),
            dt("ticket_comments", "Public and private comments of tickets"),
            dt("users", "End users, agents and admins"),
            dt("organizations", "Organizations"),
            dt("groups", "Agent groups"),
            dt("ticket_fields", "Ticket field definitions"),
            dt("macros", "Macros"),
            dt("views", "Views"),
            dt("triggers", "Triggers"),
            dt("automations", "Automations"),
            dt("satisfaction_ratings", "Customer satisfaction ratings"),
            dt("help_center_articles", "Help Center articles"),
        ],
        oauth_scopes: &[],
        api_base_url: "https://{subdomain}.zendesk.com/api/v2",
        api_key_auth: Some(ApiAuth::Basic {
            user: BasicPart::FieldWithSuffix("email", "/token"),
            password: BasicPart::Field("apiToken"),
        }),
        api_headers: &[],
        url_params: &[],
        test_endpoint: get("/users/me.json"),
        oauth: None,
    },
];

#[cfg(test)]
mod tests {
    use super::super::{find, url_placeholders, OAUTH_ACCESS_TOKEN};
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
            let templates = [p.api_base_url, p.test_endpoint.path];
            for name in templates.iter().flat_map(|t| url_placeholders(t)) {
                let resolvable = p.credential_field(name).is_some()
                    || match p.url_param(name) {
                        // A derived value must come from a real credential field.
                        Some(UrlParam::SuffixOf { field, .. }) => {
                            p.credential_field(field).is_some()
                        }
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
            assert!(p.test_endpoint.path.starts_with('/'), "{}", p.id);
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
}
