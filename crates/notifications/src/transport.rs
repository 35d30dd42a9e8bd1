//! How a message leaves: to an SMTP server through lettre, or into a file
//! under `DATA_DIR/mail/` (the all-in-one without `SMTP_URL`). Both behind
//! one trait; the sender decides what an outcome means for the mail.

use std::path::PathBuf;
use std::time::Duration;

use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncTransport as _, Message, Tokio1Executor};

use common::BoxFuture;

use crate::settings::{Security, SmtpServer};

/// How long one delivery to the SMTP server may take.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a message was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth trying again later: a 4xx answer, a server down, slow or
    /// hanging up, a disk full.
    #[error("{0}")]
    Transient(String),
    /// The server refused it for good (a 5xx answer): trying again would
    /// be refused again.
    #[error("{0}")]
    Permanent(String),
}

/// Delivers messages.
pub trait Transport: Send + Sync + std::fmt::Debug {
    /// Delivers `message`, known to the service as `key`.
    fn send<'a>(
        &'a self,
        key: &'a str,
        message: &'a Message,
    ) -> BoxFuture<'a, Result<(), SendError>>;

    /// What the logs call it.
    fn kind(&self) -> &'static str;
}

/// An SMTP server, one connection per message.
#[derive(Clone)]
pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smtp").finish_non_exhaustive()
    }
}

impl Smtp {
    pub fn new(server: &SmtpServer) -> anyhow::Result<Self> {
        common::install_crypto();
        let tls = |host: &str| TlsParameters::new(host.to_owned());
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&server.host)
            .port(server.port)
            .timeout(Some(SMTP_TIMEOUT));
        builder = match server.security {
            Security::Tls => builder.tls(Tls::Wrapper(tls(&server.host)?)),
            Security::StartTls => builder.tls(Tls::Required(tls(&server.host)?)),
            Security::Plain => builder.tls(Tls::None),
        };
        if let Some((user, password)) = &server.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.expose().into()));
        }
        Ok(Self { transport: builder.build() })
    }
}

impl Transport for Smtp {
    fn send<'a>(
        &'a self,
        _key: &'a str,
        message: &'a Message,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            match self.transport.send(message.clone()).await {
                Ok(_) => Ok(()),
                Err(error) if error.is_permanent() => Err(SendError::Permanent(describe(&error))),
                Err(error) => Err(SendError::Transient(describe(&error))),
            }
        })
    }

    fn kind(&self) -> &'static str {
        "smtp"
    }
}

/// An SMTP error with its causes (the server's answer), on one line.
fn describe(error: &lettre::transport::smtp::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.replace(['\r', '\n'], " ")
}

/// Each message an `.eml` file in one directory, named by its key and
/// written whole (a temporary file renamed), one log line per message.
#[derive(Debug, Clone)]
pub struct Files {
    dir: PathBuf,
}

impl Files {
    /// Messages in `dir` (created when the first is written).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The file of the message with `key`.
    pub fn path(&self, key: &str) -> PathBuf {
        let name: String = key
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
            .collect();
        self.dir.join(format!("{name}.eml"))
    }
}

impl Transport for Files {
    fn send<'a>(
        &'a self,
        key: &'a str,
        message: &'a Message,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let path = self.path(key);
            let temporary = path.with_extension("eml.tmp");
            let written = async {
                tokio::fs::create_dir_all(&self.dir).await?;
                tokio::fs::write(&temporary, message.formatted()).await?;
                tokio::fs::rename(&temporary, &path).await
            };
            written.await.map_err(|error| {
                SendError::Transient(format!("writing {}: {error}", path.display()))
            })?;
            let to = message.envelope().to().iter().map(ToString::to_string).collect::<Vec<_>>();
            let subject =
                message.headers().get_raw("Subject").map(str::to_owned).unwrap_or_default();
            tracing::info!(to = to.join(", "), subject, path = %path.display(), "mail written");
            Ok(())
        })
    }

    fn kind(&self) -> &'static str {
        "files"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::config::Secret;

    #[test]
    fn an_smtp_client_is_built_for_every_kind_of_connection() {
        for security in [Security::Tls, Security::StartTls, Security::Plain] {
            let credentials =
                (security != Security::Plain).then(|| ("mailer".to_owned(), Secret::new("s3cret")));
            let server =
                SmtpServer { host: "mail.example.com".into(), port: 2525, security, credentials };
            let smtp = Smtp::new(&server).expect("built without connecting");
            assert!(!format!("{smtp:?}").contains("s3cret"));
        }
    }

    #[test]
    fn a_message_file_is_named_by_its_key_alone() {
        let files = Files::new(PathBuf::from("/var/mail"));
        assert_eq!(
            files.path("019aa5c2-1a2b-7c3d-8e4f-5a6b7c8d9e0f:receipt:../../etc"),
            PathBuf::from("/var/mail/019aa5c2-1a2b-7c3d-8e4f-5a6b7c8d9e0f_receipt_______etc.eml")
        );
    }
}
