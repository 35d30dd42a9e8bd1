-- The users of the marketplace.
-- Emails are stored normalised (trimmed, lower-cased) by the service, so the
-- unique index makes them unique case-insensitively, also under concurrent
-- sign-ups. Only the Argon2id PHC string of a password is kept.
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);

CREATE UNIQUE INDEX users_email_key ON users (email);
