//! The fake processor's onboarding page (API.md "payouts"): what Stripe's
//! hosted onboarding is for a connected account. It shows the account and
//! two buttons, "Complete the details" and "Leave details missing"; then
//! the seller goes back to the link's return URL. Rendered from
//! `templates/fake_onboarding.html`, every value escaped by askama.

use askama::Template;

use super::ONBOARDING_PATH;
use crate::processor::Account;

/// The onboarding page of one connected account.
#[derive(Debug, Template)]
#[template(path = "fake_onboarding.html")]
pub struct OnboardingPage {
    account_id: String,
    /// Where the buttons post: the page's own address.
    action: String,
    /// The account's state in words.
    status: &'static str,
}

impl OnboardingPage {
    /// The page of `account` as it stands now.
    pub fn new(account: &Account) -> Self {
        Self {
            action: format!("{ONBOARDING_PATH}/{}", account.id),
            account_id: account.id.clone(),
            status: if account.ready() {
                "ready to be paid"
            } else if account.details_submitted {
                "details submitted, payouts not enabled"
            } else {
                "details needed"
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(id: &str, ready: bool) -> String {
        let account = Account {
            id: id.to_owned(),
            details_submitted: ready,
            payouts_enabled: ready,
            transfers_active: ready,
        };
        OnboardingPage::new(&account).render().expect("renders")
    }

    #[test]
    fn the_seller_completes_the_details_or_leaves_them_missing() {
        let html = page("acct_fake_1", false);
        assert!(html.contains("Payout account acct_fake_1: details needed."), "{html}");
        assert!(html.contains(
            r#"<form method="post" action="/api/payments/fake-onboarding/acct_fake_1">"#
        ));
        assert!(html.contains(r#"<button type="submit" name="outcome" value="complete" id="complete-onboarding">Complete the details</button>"#));
        assert!(html.contains(r#"<button type="submit" name="outcome" value="incomplete" id="leave-details-missing">Leave details missing</button>"#));
        assert!(page("acct_fake_1", true).contains("acct_fake_1: ready to be paid."));
    }

    #[test]
    fn what_the_page_shows_is_escaped() {
        let html = page(r#"<b>"&'"#, false);
        assert!(!html.contains("<b>"), "{html}");
    }
}
