//! `auth`: sign-up and sign-in, each in a short closed loop of a few users.
//! Both hash with Argon2id on purpose (slow by design), so they are measured
//! here, apart, and every other scenario uses minted sessions instead.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use uuid::Uuid;

use common::BoxFuture;

use super::{Bench, Throughput};
use crate::bench::load::{Outcome, Plan, Workload, closed_loop};
use crate::bench::stats::{Expect, Tally};
use crate::bench::user::{HttpUser, Reply};
use crate::client::Conn;

/// Users of each loop, and its longest warm-up and duration.
const USERS: usize = 4;
const WARMUP: Duration = Duration::from_secs(1);
const DURATION: Duration = Duration::from_secs(3);
const PASSWORD: &str = "bench password";

#[derive(Debug, Clone, Serialize)]
pub struct AuthFigures {
    /// `POST /api/users/signup`, a new email each time (201).
    pub sign_up: Throughput,
    /// `POST /api/users/signin` of existing users (200).
    pub sign_in: Throughput,
}

pub async fn run(bench: &Bench<'_>) -> anyhow::Result<AuthFigures> {
    let plan = Plan {
        users: USERS.min(usize::from(bench.args.connections)),
        warmup: bench.args.warmup.min(WARMUP),
        duration: bench.args.duration.min(DURATION),
    };
    let addr = bench.deployment.addr;
    let run = Uuid::new_v4().simple().to_string();

    bench.progress("auth: sign-up");
    let sign_up = SignUp { addr, run: run.clone(), next: AtomicUsize::new(0) };
    let sign_up = closed_loop(Arc::new(sign_up), plan, bench.cpu()).await?;

    bench.progress("auth: sign-in");
    let mut conn = Conn::open(addr).await?;
    let mut emails = Vec::new();
    for index in 0..plan.users {
        let email = format!("signin-{run}-{index}@example.com");
        let answer = conn.post("/api/users/signup", None, credentials(&email)).await?;
        anyhow::ensure!(answer.status == 201, "signing up {email} answered {}", answer.status);
        emails.push(email);
    }
    let sign_in = closed_loop(Arc::new(SignIn { addr, emails }), plan, bench.cpu()).await?;
    Ok(AuthFigures { sign_up, sign_in })
}

fn credentials(email: &str) -> Bytes {
    Bytes::from(format!(r#"{{"email":"{email}","password":"{PASSWORD}"}}"#))
}

struct SignUp {
    addr: SocketAddr,
    run: String,
    next: AtomicUsize,
}

impl Workload for SignUp {
    type User = HttpUser;

    fn user(&self, _: usize) -> BoxFuture<'_, anyhow::Result<HttpUser>> {
        Box::pin(HttpUser::connect(self.addr, None))
    }

    fn once<'a>(&'a self, user: &'a mut HttpUser, _: bool) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let index = self.next.fetch_add(1, Ordering::Relaxed);
            let body = credentials(&format!("signup-{}-{index}@example.com", self.run));
            match user.post("/api/users/signup", None, body, Expect::Success).await {
                Reply::Success(answer) if answer.status == 201 => Outcome::Done,
                _ => Outcome::Failed,
            }
        })
    }

    fn tally(user: &mut HttpUser) -> &mut Tally {
        &mut user.tally
    }
}

struct SignIn {
    addr: SocketAddr,
    /// One account per user.
    emails: Vec<String>,
}

/// A sign-in user: its connection and its account's credentials.
struct Account {
    http: HttpUser,
    credentials: Bytes,
}

impl Workload for SignIn {
    type User = Account;

    fn user(&self, index: usize) -> BoxFuture<'_, anyhow::Result<Account>> {
        Box::pin(async move {
            let email = self.emails.get(index % self.emails.len().max(1)).cloned();
            let email = email.ok_or_else(|| anyhow::anyhow!("no account to sign in with"))?;
            Ok(Account {
                http: HttpUser::connect(self.addr, None).await?,
                credentials: credentials(&email),
            })
        })
    }

    fn once<'a>(&'a self, account: &'a mut Account, _: bool) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let body = account.credentials.clone();
            match account.http.post("/api/users/signin", None, body, Expect::Success).await {
                Reply::Success(answer) if answer.status == 200 => Outcome::Done,
                _ => Outcome::Failed,
            }
        })
    }

    fn tally(account: &mut Account) -> &mut Tally {
        &mut account.http.tally
    }
}
