-- Announces every user who signed up before auth published events, once:
-- one `user.created` row in the outbox per existing user (SQLite form; keep
-- in step with 0003_announce_users.postgres.sql). The event id is the user
-- id with its version nibble set to 8, as messaging::events::
-- UserCreated::event_id computes it, so an announcement made twice is a
-- duplicate the bus drops. `occurredAt` is the sign-up time.
INSERT INTO outbox (event_id, subject, payload, created_at)
SELECT
    substr(id, 1, 14) || '8' || substr(id, 16),
    'user.created',
    json_object(
        'id', substr(id, 1, 14) || '8' || substr(id, 16),
        'subject', 'user.created',
        'occurredAt', strftime('%Y-%m-%dT%H:%M:%fZ', created_at / 1000.0, 'unixepoch'),
        'data', json_object('id', id, 'email', email)
    ),
    created_at
FROM users
ORDER BY created_at, id;
