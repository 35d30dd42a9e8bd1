-- Messaging tables every event-driven service has (SQLite form; keep in step
-- with messaging.postgres.sql).
--
-- outbox: events written in the same transaction as the state change they
-- announce. The relay publishes rows in `seq` order and deletes each once
-- the bus has it (in-process: once every subscribing service settled it).
CREATE TABLE outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id   TEXT NOT NULL UNIQUE,
    subject    TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- dead_letters: messages this service's listeners gave up on (after the
-- retry limit, or undecodable), kept for an operator to inspect and replay.
CREATE TABLE dead_letters (
    id         TEXT PRIMARY KEY,
    consumer   TEXT NOT NULL,
    subject    TEXT NOT NULL,
    event_id   TEXT,
    payload    TEXT NOT NULL,
    error      TEXT NOT NULL,
    attempts   INTEGER NOT NULL,
    created_at BIGINT NOT NULL
);
