-- The notifications service's replicas and its outgoing mail.

-- users: each user's address, from `user.created`.
CREATE TABLE users (
    id    TEXT PRIMARY KEY,
    email TEXT NOT NULL
);

-- orders: what the e-mails about an order say, from `order.created`.
CREATE TABLE orders (
    id        TEXT PRIMARY KEY,
    buyer_id  TEXT NOT NULL,
    ticket_id TEXT NOT NULL,
    title     TEXT,
    price     BIGINT NOT NULL,
    starts_at TEXT,
    seller_id TEXT
);

-- outgoing_mail: the decision to send one e-mail, written in the
-- transaction of the event that caused it and keyed by
-- `<event id>:<kind>:<recipient user id>`, so an event handled twice
-- decides nothing more. The message is rendered then; the address is
-- filled in when known (`waiting_address` until the recipient's
-- `user.created`). The sender delivers `pending` rows whose
-- `next_attempt_at` has come, claiming each until `sending_until` (another
-- replica leaves it alone meanwhile; a sender that died is taken over
-- after it), then marks it `sent`, or `failed` with `last_error`.
CREATE TABLE outgoing_mail (
    key             TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    recipient_id    TEXT NOT NULL,
    address         TEXT,
    subject         TEXT NOT NULL,
    text_body       TEXT NOT NULL,
    html_body       TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    sending_until   BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    sent_at         BIGINT
);

CREATE INDEX outgoing_mail_due ON outgoing_mail (state, next_attempt_at);
CREATE INDEX outgoing_mail_recipient ON outgoing_mail (recipient_id, state);

-- refused_addresses: addresses an SMTP server refused for good (5xx), with
-- its answer, for the preferences page to show.
CREATE TABLE refused_addresses (
    address    TEXT PRIMARY KEY,
    reason     TEXT NOT NULL,
    refused_at BIGINT NOT NULL
);
