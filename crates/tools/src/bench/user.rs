//! A virtual user over HTTP: its connection, the session it acts with, and
//! the tally of every answer it got, each judged against what the scenario
//! expects.

use std::net::SocketAddr;

use bytes::Bytes;
use hyper::header::HeaderValue;

use super::deployment::Session;
use super::stats::{Expect, Tally};
use crate::client::{Answer, Conn};

/// How a request went.
#[derive(Debug)]
pub enum Reply {
    /// A 2xx.
    Success(Answer),
    /// A refusal the scenario expects.
    Refused,
    /// An unexpected answer, or none (`None`): an error (already tallied).
    Error(Option<Answer>),
}

/// One virtual user.
pub struct HttpUser {
    pub conn: Conn,
    pub tally: Tally,
    pub session: Option<Session>,
}

impl HttpUser {
    pub async fn connect(addr: SocketAddr, session: Option<Session>) -> anyhow::Result<Self> {
        Ok(Self { conn: Conn::open(addr).await?, tally: Tally::default(), session })
    }

    /// The user's own `Authorization` header.
    pub fn bearer(&self) -> Option<HeaderValue> {
        self.session.as_ref().map(|s| s.bearer.clone())
    }

    pub async fn get(&mut self, path: &str, auth: Option<&HeaderValue>, expect: Expect) -> Reply {
        let answer = self.conn.get(path, auth).await;
        self.judge(answer, expect)
    }

    pub async fn post(
        &mut self,
        path: &str,
        auth: Option<&HeaderValue>,
        json: Bytes,
        expect: Expect,
    ) -> Reply {
        let answer = self.conn.post(path, auth, json).await;
        self.judge(answer, expect)
    }

    fn judge(&mut self, answer: anyhow::Result<Answer>, expect: Expect) -> Reply {
        match answer {
            Ok(answer) if answer.is_success() => {
                self.tally.answer(&answer, expect);
                Reply::Success(answer)
            }
            Ok(answer) => {
                if self.tally.answer(&answer, expect) {
                    Reply::Refused
                } else {
                    Reply::Error(Some(answer))
                }
            }
            Err(_) => {
                self.tally.failed_call();
                Reply::Error(None)
            }
        }
    }
}
