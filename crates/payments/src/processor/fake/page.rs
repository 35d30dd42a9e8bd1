//! The fake processor's test authentication page (API.md "payments"): what
//! a bank's 3-D Secure page is with Stripe. It shows the payment and two
//! buttons that complete or fail the authentication, then what became of
//! it; rendered from `templates/fake_authentication.html`, every value
//! escaped by askama.

use askama::Template;

use super::{AUTHENTICATION_PATH, Authentication, IntentStatus};

/// The page of one test authentication.
#[derive(Debug, Template)]
#[template(path = "fake_authentication.html")]
pub struct AuthenticationPage {
    intent_id: String,
    /// Where the buttons post: the page's own address.
    action: String,
    /// In currency units, e.g. `19.99 USD`.
    amount: String,
    /// The buyer has yet to complete or fail it.
    waiting: bool,
    /// The buyer completed it: the intent is charged.
    completed: bool,
}

impl AuthenticationPage {
    /// The page of `authentication` as it stands now.
    pub fn new(authentication: &Authentication) -> Self {
        let intent_id = authentication.intent_id.clone();
        Self {
            action: format!("{AUTHENTICATION_PATH}/{intent_id}"),
            amount: format!(
                "{}.{:02} {}",
                authentication.amount / 100,
                authentication.amount % 100,
                authentication.currency.to_uppercase()
            ),
            waiting: authentication.status == IntentStatus::RequiresAction,
            completed: authentication.status == IntentStatus::Succeeded,
            intent_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(intent_id: &str, status: IntentStatus) -> String {
        let authentication = Authentication {
            intent_id: intent_id.to_owned(),
            amount: 1905,
            currency: "usd".to_owned(),
            status,
            return_url: None,
        };
        AuthenticationPage::new(&authentication).render().expect("renders")
    }

    #[test]
    fn the_buyer_completes_or_fails_a_waiting_authentication() {
        let html = page("pi_fake_1", IntentStatus::RequiresAction);
        assert!(html.contains("Payment of <strong>19.05 USD</strong> (pi_fake_1)."), "{html}");
        assert!(html.contains(
            r#"<form method="post" action="/api/payments/fake-authentication/pi_fake_1">"#
        ));
        assert!(html.contains(r#"<button type="submit" name="outcome" value="complete" id="complete-authentication">Complete authentication</button>"#));
        assert!(html.contains(r#"<button type="submit" name="outcome" value="fail" id="fail-authentication">Fail authentication</button>"#));
        assert!(!html.contains("authentication-done"));
    }

    #[test]
    fn a_decided_authentication_says_how_it_ended() {
        let completed = page("pi_fake_1", IntentStatus::Succeeded);
        assert!(completed.contains(
            r#"<p id="authentication-done">Authentication completed. You can close this page.</p>"#
        ));
        for ended in [IntentStatus::AuthenticationFailed, IntentStatus::Canceled] {
            let html = page("pi_fake_1", ended);
            assert!(html.contains(
                r#"<p id="authentication-done">Authentication failed. You can close this page.</p>"#
            ));
            assert!(!html.contains("<form"));
        }
    }

    #[test]
    fn what_the_page_shows_is_escaped() {
        let html = page(r#"<b>"&'"#, IntentStatus::RequiresAction);
        assert!(!html.contains("<b>"), "{html}");
        assert!(html.contains("(&#60;b&#62;&#34;&#38;&#39;)."), "{html}");
    }
}
