-- Saved searches ("alerts", issue 26) and the tickets replica they are
-- matched against.

-- alerts: a user's saved search, with the listing's filters (prices in
-- cents, dates in milliseconds). It ends at `ends_at` (its `to`, if any):
-- not matched nor listed after. `last_mailed_at` keeps it to one e-mail an
-- hour.
CREATE TABLE alerts (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL,
    q              TEXT NOT NULL,
    min_price      BIGINT,
    max_price      BIGINT,
    starts_from    BIGINT,
    starts_to      BIGINT,
    ends_at        BIGINT,
    created_at     BIGINT NOT NULL,
    last_mailed_at BIGINT
);

CREATE INDEX alerts_user ON alerts (user_id, created_at);

-- alert_words: each word of an alert (lower-cased, its first 20
-- characters), with how many words the alert has. A ticket matches the
-- alerts all of whose words are among the prefixes of the words of its
-- title and venue: one indexed lookup per prefix, counted per alert, read
-- from this table alone (ARCHITECTURE.md, "Alerts").
CREATE TABLE alert_words (
    word       TEXT NOT NULL,
    alert_id   TEXT NOT NULL,
    word_count INTEGER NOT NULL,
    PRIMARY KEY (word, alert_id)
);

CREATE INDEX alert_words_alert ON alert_words (alert_id);

-- tickets: the replica of listings, from `ticket.created` and
-- `ticket.updated` (the highest `version` wins). `status` is `on_sale`,
-- `held` (reserved or sold), `withdrawn` or `ended`; `starts_at` in
-- milliseconds (`starts_at_text` as the seller wrote it).
CREATE TABLE tickets (
    id             TEXT PRIMARY KEY,
    seller_id      TEXT NOT NULL,
    title          TEXT NOT NULL,
    venue          TEXT,
    price          BIGINT NOT NULL,
    starts_at      BIGINT,
    starts_at_text TEXT,
    status         TEXT NOT NULL,
    version        BIGINT NOT NULL
);
