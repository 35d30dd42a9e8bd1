//! What only the notifications service reads: where mail goes (SMTP or
//! files), whom it is from, and the site's public address for the links in
//! it (flattened into `ticketing`'s command line). Each is checked at
//! start-up, naming its variable, never echoing a secret.

use clap::{Args, ValueEnum};
use lettre::message::Mailbox;

use common::config::Secret;

/// How mail leaves the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MailTransport {
    /// To the SMTP server at SMTP_URL.
    Smtp,
    /// Each message an `.eml` file under DATA_DIR/mail/ (nothing is sent).
    Files,
}

/// The notifications service's settings.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[group(id = "notifications-settings")]
#[command(next_help_heading = "Notifications")]
pub struct Settings {
    /// The SMTP server mail is sent through: `smtp://user:pass@host:587`
    /// (STARTTLS required), `smtps://user:pass@host:465` (TLS from the
    /// start), `smtp://host:1025?tls=none` (plain text, no credentials: a
    /// local sink such as Mailpit). User and password percent-encoded.
    /// Unset: the all-in-one writes mail to files; `serve notifications`
    /// refuses to start unless MAIL_TRANSPORT=files.
    #[arg(global = true, long, env = "SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<Secret>,

    /// How mail leaves: `smtp` (SMTP_URL) or `files` (each message an
    /// `.eml` file under DATA_DIR/mail/, one log line each). Default: smtp
    /// when SMTP_URL is set, else files in the all-in-one.
    #[arg(global = true, long, env = "MAIL_TRANSPORT", value_enum)]
    pub mail_transport: Option<MailTransport>,

    /// The sender of every e-mail (`Name <address>` or an address).
    #[arg(
        global = true,
        long,
        env = "MAIL_FROM",
        default_value = "Ticketing <no-reply@localhost>"
    )]
    pub mail_from: String,

    /// The site's address as people reach it (`https://tickets.example.com`):
    /// the links in e-mails start with it, and Message-IDs end with its
    /// host. All-in-one default: http://localhost:<PORT>; required for
    /// `serve notifications`.
    #[arg(global = true, long, env = "PUBLIC_URL")]
    pub public_url: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        common::config::defaults()
    }
}

/// Where the SMTP server is and how to talk to it, from `SMTP_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpServer {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// User and password, percent-decoded.
    pub credentials: Option<(String, Secret)>,
}

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// TLS from the first byte (`smtps://`).
    Tls,
    /// STARTTLS, required (`smtp://`, `?tls=required`).
    StartTls,
    /// None (`smtp://...?tls=none`): a local sink only.
    Plain,
}

/// Where mail goes, as the settings decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportChoice {
    Smtp(SmtpServer),
    Files,
}

impl Settings {
    /// The transport these settings choose, or why they choose none. The
    /// all-in-one writes files without SMTP_URL; a notifications service
    /// alone (`alone`) must be told, or it would send nothing and say so
    /// only in files nobody reads.
    pub fn transport(&self, alone: bool) -> anyhow::Result<TransportChoice> {
        match (self.mail_transport, &self.smtp_url) {
            (Some(MailTransport::Files), _) => Ok(TransportChoice::Files),
            (_, Some(url)) => Ok(TransportChoice::Smtp(smtp_server(url)?)),
            (Some(MailTransport::Smtp), None) => {
                anyhow::bail!("MAIL_TRANSPORT=smtp needs SMTP_URL")
            }
            (None, None) if alone => anyhow::bail!(
                "SMTP_URL must be set for `ticketing serve notifications` (or MAIL_TRANSPORT=files \
                 to write each message under DATA_DIR/mail/ instead of sending it)"
            ),
            (None, None) => Ok(TransportChoice::Files),
        }
    }

    /// The site's public address without a trailing `/`: PUBLIC_URL, or
    /// `this_process` (the all-in-one's own) when it is unset.
    pub fn public_url(&self, this_process: Option<String>) -> anyhow::Result<url::Url> {
        let Some(text) = self.public_url.clone().or(this_process) else {
            anyhow::bail!(
                "PUBLIC_URL must be set for `ticketing serve notifications`: the links in e-mails \
                 are absolute (e.g. https://tickets.example.com)"
            )
        };
        let url = url::Url::parse(text.trim())
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.host_str().is_some())
            .filter(|url| url.query().is_none() && url.fragment().is_none());
        match url {
            Some(url) => Ok(url),
            None => anyhow::bail!(
                "PUBLIC_URL must be an http(s) address such as https://tickets.example.com, not \
                 `{text}`"
            ),
        }
    }

    /// The sender of every e-mail.
    pub fn from(&self) -> anyhow::Result<Mailbox> {
        self.mail_from.parse().map_err(|_| {
            anyhow::anyhow!(
                "MAIL_FROM must be an address such as `Ticketing <no-reply@example.com>`, not `{}`",
                self.mail_from
            )
        })
    }

    /// Everything above, checked before anything starts.
    pub fn check(&self, alone: bool, this_process: Option<String>) -> anyhow::Result<()> {
        self.transport(alone)?;
        self.public_url(this_process)?;
        self.from()?;
        Ok(())
    }
}

/// Parses SMTP_URL; an error names the variable and never the credentials.
fn smtp_server(url: &Secret) -> anyhow::Result<SmtpServer> {
    let forms = "smtp://user:pass@host:587 (STARTTLS), smtps://user:pass@host:465 (TLS) or \
                 smtp://host:1025?tls=none (a local sink)";
    let refuse = |why: &str| anyhow::anyhow!("SMTP_URL {why}: use {forms}");
    let parsed = url::Url::parse(url.expose()).map_err(|_| refuse("is not a URL"))?;
    let host = parsed.host_str().filter(|h| !h.is_empty()).ok_or_else(|| refuse("has no host"))?;
    let tls =
        parsed.query_pairs().find(|(name, _)| name == "tls").map(|(_, value)| value.into_owned());
    let (security, default_port) = match (parsed.scheme(), tls.as_deref()) {
        ("smtps", None) => (Security::Tls, 465),
        ("smtp", None | Some("required")) => (Security::StartTls, 587),
        ("smtp", Some("none")) => (Security::Plain, 587),
        ("smtp" | "smtps", Some(_)) => return Err(refuse("has an unknown tls= value")),
        _ => return Err(refuse("must start with smtp:// or smtps://")),
    };
    let decode = |text: &str| {
        url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default()
    };
    let credentials = match (parsed.username(), parsed.password()) {
        ("", None) => None,
        (user, Some(password)) => Some((decode(user), Secret::new(decode(password)))),
        (_, None) => return Err(refuse("names a user without a password")),
    };
    if security == Security::Plain && credentials.is_some() {
        return Err(refuse("with tls=none may not carry credentials (they would travel in clear)"));
    }
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    Ok(SmtpServer { host, port: parsed.port().unwrap_or(default_port), security, credentials })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(configure: impl FnOnce(&mut Settings)) -> Settings {
        let mut settings = Settings::default();
        configure(&mut settings);
        settings
    }

    fn smtp(url: &str) -> Settings {
        with(|s| s.smtp_url = Some(Secret::new(url)))
    }

    #[test]
    fn notifications_alone_need_an_smtp_server_unless_files_are_chosen() {
        let refused = Settings::default().transport(true).expect_err("refused").to_string();
        assert!(refused.starts_with("SMTP_URL must be set for `ticketing serve notifications`"));
        assert!(refused.contains("MAIL_TRANSPORT=files"), "{refused}");
        let files = with(|s| s.mail_transport = Some(MailTransport::Files));
        assert_eq!(files.transport(true).expect("files"), TransportChoice::Files);
        let smtp_without_url = with(|s| s.mail_transport = Some(MailTransport::Smtp));
        let refused = smtp_without_url.transport(false).expect_err("refused").to_string();
        assert_eq!(refused, "MAIL_TRANSPORT=smtp needs SMTP_URL");
    }

    #[test]
    fn the_all_in_one_writes_files_without_an_smtp_server() {
        assert_eq!(Settings::default().transport(false).expect("files"), TransportChoice::Files);
    }

    #[test]
    fn smtp_url_names_the_server_and_how_to_reach_it() {
        let server = |url: &str| match smtp(url).transport(true).expect("parses") {
            TransportChoice::Smtp(server) => server,
            TransportChoice::Files => panic!("not SMTP"),
        };
        let starttls = server("smtp://mailer:p%40ss+word@mail.example.com:2525");
        assert_eq!((starttls.host.as_str(), starttls.port), ("mail.example.com", 2525));
        assert_eq!(starttls.security, Security::StartTls);
        let (user, password) = starttls.credentials.expect("credentials");
        assert_eq!((user.as_str(), password.expose()), ("mailer", "p@ss+word"));
        let tls = server("smtps://u:p@mail.example.com");
        assert_eq!((tls.port, tls.security), (465, Security::Tls));
        assert_eq!(server("smtp://mail.example.com?tls=required").port, 587);
        let sink = server("smtp://127.0.0.1:1025?tls=none");
        assert_eq!((sink.port, sink.security, sink.credentials), (1025, Security::Plain, None));
    }

    #[test]
    fn a_bad_smtp_url_is_refused_without_its_credentials() {
        for url in [
            "mail.example.com",
            "http://u:s3cret@mail.example.com",
            "smtp://u:s3cret@mail.example.com?tls=maybe",
            "smtp://u:s3cret@127.0.0.1:1025?tls=none",
            "smtp://s3cret@mail.example.com",
        ] {
            let refused = smtp(url).transport(true).expect_err(url).to_string();
            assert!(refused.starts_with("SMTP_URL "), "{refused}");
            assert!(!refused.contains("s3cret"), "{refused}");
        }
    }

    #[test]
    fn public_url_is_required_alone_and_must_be_an_http_address() {
        let refused = Settings::default().public_url(None).expect_err("refused").to_string();
        assert!(refused.starts_with("PUBLIC_URL must be set for `ticketing serve notifications`"));
        let local = Settings::default().public_url(Some("http://localhost:3000".into()));
        assert_eq!(local.expect("the all-in-one's").as_str(), "http://localhost:3000/");
        for bad in ["tickets.example.com", "ftp://example.com", "https://example.com/?a=1"] {
            let refused = with(|s| s.public_url = Some(bad.into())).public_url(None);
            let refused = refused.expect_err(bad).to_string();
            assert!(refused.starts_with("PUBLIC_URL must be an http(s) address"), "{refused}");
        }
    }

    #[test]
    fn mail_from_must_be_an_address() {
        assert_eq!(
            Settings::default().from().expect("the default").to_string(),
            "Ticketing <no-reply@localhost>"
        );
        let refused = with(|s| s.mail_from = "nobody".into()).from().expect_err("refused");
        assert!(refused.to_string().starts_with("MAIL_FROM must be an address"), "{refused}");
    }
}
