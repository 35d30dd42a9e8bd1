//! What the tests of `ticketing-tools fake-stripe` share: the command
//! started as a process, and its journal read back.

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// A running `ticketing-tools fake-stripe`, killed on drop.
pub struct Fake {
    pub base: String,
    child: Child,
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the command on a free port with its journal at `state` and
/// `extra` flags.
pub fn start_fake(state: &Path, extra: &[&str]) -> Fake {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ticketing-tools"))
        .args(["fake-stripe", "--port", "0", "--state"])
        .arg(state)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("ticketing-tools fake-stripe starts");
    // Its first line names its address (log lines may come before it).
    let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let base = loop {
        let mut line = String::new();
        let read = out.read_line(&mut line).expect("a line");
        assert!(read > 0, "fake-stripe ended without naming its address");
        if line.starts_with("fake Stripe on ") {
            let address = line.split_whitespace().find(|word| word.starts_with("http://"));
            break address.expect("an address").to_owned();
        }
    };
    // Keep reading what it prints, so that it never writes to a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    Fake { base, child }
}

/// The journal's lines at `state` (none when there is no file).
#[allow(dead_code, reason = "not every test reads the journal")]
pub fn journal(state: &Path) -> Vec<Value> {
    std::fs::read_to_string(state)
        .map(|text| {
            text.lines().map(|line| serde_json::from_str(line).expect("a JSON line")).collect()
        })
        .unwrap_or_default()
}
