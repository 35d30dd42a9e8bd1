//! `ticketing-tools bench` end to end, small and fast, on the embedded stack: it
//! starts its deployment, measures every scenario and writes the JSON
//! document. Only correctness is asserted (every scenario measured
//! something, nothing answered 5xx, the flash sale sold each ticket exactly
//! once and every winner paid); speed never is. The deployment is the
//! `ticketing` binary beside `ticketing-tools` in the target directory: a
//! workspace build (`cargo nextest run --workspace`) builds both; alone,
//! `cargo build -p ticketing` first (the bench says so if it is missing).

use std::process::Command;

use serde_json::Value;

#[test]
fn the_bench_measures_every_scenario_and_sells_each_flash_ticket_once() {
    let json = std::env::temp_dir().join(format!("ticketing-bench-{}.json", uuid::Uuid::new_v4()));
    let output = Command::new(env!("CARGO_BIN_EXE_ticketing-tools"))
        .args(["bench", "--stack", "embedded", "--duration", "1s", "--warmup", "0s"])
        .args(["--connections", "4", "--flash-tickets", "50", "--flash-buyers", "300"])
        .args(["--flash-connections", "32", "--alerts", "200", "--json"])
        .arg(&json)
        .env("RUST_LOG", "warn")
        .env_remove("TICKETING_BIN")
        .output()
        .expect("ticketing-tools bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "ticketing-tools bench failed\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value =
        serde_json::from_slice(&std::fs::read(&json).expect("the JSON document is written"))
            .expect("the JSON document is JSON");
    let _ = std::fs::remove_file(&json);
    let scenarios = &report["scenarios"];
    let figure = |pointer: &str| {
        scenarios.pointer(pointer).and_then(Value::as_u64).unwrap_or_else(|| {
            panic!(
                "the report has no {pointer}:\n{}",
                serde_json::to_string_pretty(scenarios).unwrap_or_default()
            )
        })
    };

    for measured in [
        "/healthz/count",
        "/browse/product/count",
        "/browse/ceiling/count",
        "/sell/product/count",
        "/sell/ceiling/count",
        "/purchase/flows/count",
        "/purchase/order_to_payment/count",
        "/purchase/payment_to_complete/count",
        "/propagation/product/count",
        "/propagation/ceiling/count",
        "/flash/latency/count",
        "/auth/sign_up/count",
        "/auth/sign_in/count",
        "/alerts/alerts",
        "/alerts/product/count",
    ] {
        assert!(figure(measured) > 0, "{measured} is 0:\n{stdout}");
    }
    for server_errors in [
        "/healthz/answers/server_errors",
        "/browse/product/answers/server_errors",
        "/sell/product/answers/server_errors",
        "/purchase/flows/answers/server_errors",
        "/propagation/answers/server_errors",
        "/flash/answers/server_errors",
        "/flash/payment_answers/server_errors",
        "/auth/sign_up/answers/server_errors",
        "/auth/sign_in/answers/server_errors",
        "/alerts/product/answers/server_errors",
    ] {
        assert_eq!(figure(server_errors), 0, "{server_errors}:\n{stdout}");
    }
    assert_eq!(figure("/purchase/flows/failed"), 0, "every flow completes:\n{stdout}");
    assert_eq!(figure("/propagation/failed"), 0, "every new ticket is ordered:\n{stdout}");
    assert_eq!(figure("/flash/winners"), 50, "every flash ticket is sold once:\n{stdout}");
    assert_eq!(figure("/flash/paid"), 50, "every flash winner paid:\n{stdout}");
    assert!(stdout.contains("flash sold out in"), "the text report shows the targets:\n{stdout}");
}
