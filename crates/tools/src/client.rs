//! One keep-alive HTTP/1.1 connection, with as little work per request as
//! hyper allows: hyper's connection-level client over a `TcpStream`, driven
//! in the caller's task (no task per connection, no pool, no cross-task
//! wake-up per request). A connection that breaks is opened again on the
//! next request.

use std::net::SocketAddr;
use std::pin::Pin;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// An answer, read to its end.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<HeaderValue>,
    pub body: Bytes,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Whether the body mentions `text` (an error message, a status).
    pub fn mentions(&self, text: &str) -> bool {
        self.body.windows(text.len()).any(|w| w == text.as_bytes())
    }

    /// The `id` of a JSON object body.
    pub fn id(&self) -> Option<uuid::Uuid> {
        let value: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        value.get("id")?.as_str()?.parse().ok()
    }
}

/// A keep-alive connection to one server.
pub struct Conn {
    addr: SocketAddr,
    host: HeaderValue,
    link: Option<Link>,
}

struct Link {
    sender: SendRequest<Full<Bytes>>,
    driver: Pin<Box<Connection<TokioIo<TcpStream>, Full<Bytes>>>>,
}

/// One request to an absolute `url` (`http://host:port/path?query`) on a
/// connection of its own: for the checker's calls to the fake Stripe.
pub async fn fetch(
    method: Method,
    url: &str,
    auth: Option<&HeaderValue>,
) -> anyhow::Result<Answer> {
    let url = url::Url::parse(url).with_context(|| format!("a URL: {url}"))?;
    let addr = *url.socket_addrs(|| None)?.first().context("no address for the URL")?;
    let path = &url[url::Position::BeforePath..];
    Conn::open(addr).await?.send(method, path, auth, Bytes::new()).await
}

impl Conn {
    /// Connects now, so that a scenario's connections exist before it starts.
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let host = HeaderValue::from_str(&addr.to_string()).context("a host header")?;
        Ok(Self { addr, host, link: Some(Link::connect(addr).await?) })
    }

    pub async fn get(&mut self, path: &str, auth: Option<&HeaderValue>) -> anyhow::Result<Answer> {
        self.send(Method::GET, path, auth, Bytes::new()).await
    }

    /// POSTs a JSON body.
    pub async fn post(
        &mut self,
        path: &str,
        auth: Option<&HeaderValue>,
        json: Bytes,
    ) -> anyhow::Result<Answer> {
        self.send(Method::POST, path, auth, json).await
    }

    /// Sends a request (a JSON body unless empty) and reads the answer.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        auth: Option<&HeaderValue>,
        body: Bytes,
    ) -> anyhow::Result<Answer> {
        let mut request = Request::builder().method(method).uri(path).header(HOST, &self.host);
        if let Some(auth) = auth {
            request = request.header(AUTHORIZATION, auth);
        }
        if !body.is_empty() {
            request = request.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let request = request.body(Full::new(body)).context("building a request")?;
        let link = self.ready_link().await?;
        match link.exchange(request).await {
            Ok(answer) => Ok(answer),
            Err(error) => {
                self.link = None;
                Err(error)
            }
        }
    }

    /// The connection, ready for a request: opened again when the server
    /// closed it (the request was not sent yet, so nothing is lost).
    async fn ready_link(&mut self) -> anyhow::Result<&mut Link> {
        let usable = match self.link.as_mut() {
            Some(link) => link.ready().await.is_ok(),
            None => false,
        };
        if !usable {
            self.link = None;
            let mut link = Link::connect(self.addr).await?;
            link.ready().await?;
            self.link = Some(link);
        }
        self.link.as_mut().context("the connection was just opened")
    }
}

impl Link {
    async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream =
            TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP/1.1 handshake")?;
        Ok(Self { sender, driver: Box::pin(driver) })
    }

    /// Waits until the connection can take a request, driving it meanwhile.
    async fn ready(&mut self) -> anyhow::Result<()> {
        tokio::select! {
            biased;
            ready = self.sender.ready() => ready.context("the connection is not usable"),
            closed = self.driver.as_mut() => closed_early(closed),
        }
    }

    /// Sends the request and reads the whole answer, driving the connection
    /// in this task.
    async fn exchange(&mut self, request: Request<Full<Bytes>>) -> anyhow::Result<Answer> {
        let response = tokio::select! {
            biased;
            response = self.sender.send_request(request) => response.context("sending a request")?,
            closed = self.driver.as_mut() => return closed_early(closed),
        };
        let (parts, body) = response.into_parts();
        let body = tokio::select! {
            biased;
            body = body.collect() => body.context("reading an answer")?.to_bytes(),
            closed = self.driver.as_mut() => return closed_early(closed),
        };
        Ok(Answer {
            status: parts.status.as_u16(),
            content_type: parts.headers.get(CONTENT_TYPE).cloned(),
            body,
        })
    }
}

fn closed_early<T>(closed: Result<(), hyper::Error>) -> anyhow::Result<T> {
    match closed {
        Ok(()) => anyhow::bail!("the server closed the connection"),
        Err(error) => Err(error).context("the connection failed"),
    }
}
