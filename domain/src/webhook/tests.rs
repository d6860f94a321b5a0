use cqrs_es::test::TestFramework;

use super::*;

fn open() -> TargetPolicy {
    TargetPolicy {
        allow_private: true,
        allow_email: true,
    }
}

fn strict() -> TargetPolicy {
    TargetPolicy {
        allow_private: false,
        allow_email: false,
    }
}

#[test]
fn production_targets_are_https_to_public_hosts_without_credentials() {
    assert!(WebhookTarget::parse("https://hooks.example.com/x?y=1", strict()).is_ok());
    for refused in [
        "http://hooks.example.com/x",
        "https://127.0.0.1/x",
        "https://10.1.2.3/",
        "https://172.16.0.1/",
        "https://192.168.1.1/",
        "https://169.254.169.254/latest/meta-data",
        "https://100.64.0.1/",
        "https://0.0.0.0/",
        "https://[::1]/",
        "https://[fe80::1]/",
        "https://[fd00::1]/",
        "https://[::ffff:10.0.0.1]/",
        "https://localhost/",
        "https://metadata.google.internal/",
        "https://printer.local/",
        "https://intranet/",
        "https://user:pass@hooks.example.com/",
        "ftp://hooks.example.com/",
        "mailto:ops@example.com",
        "not a url",
    ] {
        assert!(
            WebhookTarget::parse(refused, strict()).is_err(),
            "{refused} must be refused"
        );
    }
}

#[test]
fn a_permissive_policy_allows_loopback_http_and_email() {
    assert_eq!(
        WebhookTarget::parse("http://127.0.0.1:8080/hook", open()).unwrap(),
        WebhookTarget::Http(url::Url::parse("http://127.0.0.1:8080/hook").unwrap())
    );
    assert_eq!(
        WebhookTarget::parse("mailto:ops%40x@example.com", open()).unwrap_err(),
        "a mailto: URL names exactly one e-mail address"
    );
    let email = WebhookTarget::parse("mailto:ops@example.com", open()).unwrap();
    assert_eq!(email, WebhookTarget::Email("ops@example.com".into()));
    assert_eq!(email.as_url(), "mailto:ops@example.com");
    assert!(WebhookTarget::parse("mailto:a@x.com,b@x.com", open()).is_err());
    assert!(WebhookTarget::parse("mailto:a@x.com?subject=hi", open()).is_err());
}

#[test]
fn notification_types_parse_by_their_dotted_names() {
    for kind in NotificationType::ALL {
        assert_eq!(NotificationType::parse(kind.as_str()), Ok(kind));
        assert_eq!(
            serde_json::to_value(kind).unwrap(),
            serde_json::json!(kind.as_str())
        );
    }
    assert!(NotificationType::parse("job.exploded")
        .unwrap_err()
        .contains("job.failed"));
    assert!(Subscriptions::new([]).is_err());
}

fn account(id: &str) -> AccountId {
    AccountId::parse(id).unwrap()
}

fn created() -> WebhookEvent {
    WebhookEvent::WebhookCreated {
        webhook_id: crate::WebhookId::from_uuid(uuid::Uuid::from_u128(
            0x0190f5c2_7d3e_7a11_8b2c_00000000e001,
        )),
        account_id: "acme".into(),
        url: "https://hooks.example.com/".into(),
        events: vec![NotificationType::JobFailed],
        description: None,
    }
}

#[test]
fn another_account_cannot_touch_a_webhook_and_an_unchanged_update_records_nothing() {
    TestFramework::<Webhook>::with(())
        .given(vec![created()])
        .when(WebhookCommand::Delete {
            account_id: account("other"),
        })
        .then_expect_error(WebhookError::NotFound);
    TestFramework::<Webhook>::with(())
        .given(vec![created()])
        .when(WebhookCommand::Update {
            account_id: account("acme"),
            target: Some(WebhookTarget::parse("https://hooks.example.com/", strict()).unwrap()),
            events: Some(Subscriptions::new([NotificationType::JobFailed]).unwrap()),
            description: None,
        })
        .then_expect_events(vec![]);
    TestFramework::<Webhook>::with(())
        .given(vec![created(), WebhookEvent::WebhookDeleted {}])
        .when(WebhookCommand::RotateSecret {
            account_id: account("acme"),
        })
        .then_expect_error(WebhookError::NotFound);
}
