//! A real SMTP server for the tests, in-process: it speaks enough SMTP for
//! a client (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT), keeps every
//! message it took, and answers each DATA as told: accept, refuse with a
//! 4xx or 5xx, or hang up without answering (the message arrived, the
//! client never hears so). It can also be down: every connection is
//! closed before the greeting.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// How the sink answers one DATA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `250`: taken.
    Accept,
    /// This reply line instead (`451 4.3.0 Try again later`,
    /// `550 5.1.1 No such user`); the message is not taken.
    Reply(&'static str),
    /// The message is taken, and the connection closed before the answer.
    HangUp,
}

/// A message the sink took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent, dot-unstuffed, lines ending in CRLF.
    pub data: String,
}

#[derive(Debug, Default)]
struct State {
    received: Vec<Received>,
    answers: VecDeque<Answer>,
    down: bool,
}

/// The SMTP sink, listening on a free local port until dropped.
#[derive(Debug)]
pub struct Sink {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
}

impl Sink {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let addr = listener.local_addr().expect("an address");
        let state = Arc::new(Mutex::new(State::default()));
        let stop = CancellationToken::new();
        let (shared, stopped) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    () = stopped.cancelled() => return,
                };
                let down = shared.lock().unwrap_or_else(PoisonError::into_inner).down;
                if let (Ok((stream, _)), false) = (accepted, down) {
                    tokio::spawn(session(stream, shared.clone()));
                }
            }
        });
        Self { addr, state, stop }
    }

    /// The next DATA commands are answered so, in order (then accepted).
    pub fn answer(&self, answers: impl IntoIterator<Item = Answer>) {
        self.lock().answers.extend(answers);
    }

    /// From now on, every connection is closed at once (`true`), or
    /// served again (`false`).
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    /// Every message taken so far.
    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// Forgets the messages taken so far.
    pub fn clear(&self) {
        self.lock().received.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// One client's connection.
async fn session(stream: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut lines = BufReader::new(reader);
    writer.write_all(b"220 sink ESMTP ready\r\n").await?;
    let (mut from, mut to) = (String::new(), Vec::new());
    loop {
        let mut line = String::new();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let verb = command.split([' ', ':']).next().unwrap_or("").to_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-sink greets you\r\n250 8BITMIME\r\n",
            "HELO" | "NOOP" => b"250 OK\r\n",
            "RSET" => {
                (from, to) = (String::new(), Vec::new());
                b"250 OK\r\n"
            }
            "MAIL" => {
                from = address_in(&command);
                b"250 OK\r\n"
            }
            "RCPT" => {
                to.push(address_in(&command));
                b"250 OK\r\n"
            }
            "DATA" => {
                writer.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
                let data = read_data(&mut lines).await?;
                let message = Received { from: from.clone(), to: to.clone(), data };
                let answer = {
                    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
                    let answer = state.answers.pop_front().unwrap_or(Answer::Accept);
                    if matches!(answer, Answer::Accept | Answer::HangUp) {
                        state.received.push(message);
                    }
                    answer
                };
                match answer {
                    Answer::Accept => writer.write_all(b"250 2.0.0 Queued\r\n").await?,
                    Answer::Reply(text) => {
                        writer.write_all(format!("{text}\r\n").as_bytes()).await?
                    }
                    Answer::HangUp => return Ok(()),
                }
                continue;
            }
            "QUIT" => {
                writer.write_all(b"221 Bye\r\n").await?;
                return Ok(());
            }
            _ => b"500 5.5.2 Unknown command\r\n",
        };
        writer.write_all(reply).await?;
    }
}

/// The address between `<` and `>` of a MAIL or RCPT command.
fn address_in(command: &str) -> String {
    let start = command.find('<').map_or(0, |i| i + 1);
    let end = command.rfind('>').unwrap_or(command.len());
    command.get(start..end).unwrap_or_default().to_owned()
}

/// The message after DATA, up to the line holding a single `.`.
async fn read_data(
    lines: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> std::io::Result<String> {
    let mut data = String::new();
    loop {
        let mut line = String::new();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(data);
        }
        if line == ".\r\n" {
            return Ok(data);
        }
        data.push_str(line.strip_prefix('.').unwrap_or(&line));
    }
}
