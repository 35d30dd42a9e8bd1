-- Announces every user who signed up before auth published events, once:
-- one `user.created` row in the outbox per existing user (PostgreSQL form;
-- keep in step with 0003_announce_users.sqlite.sql). The event id is the
-- user id with its version nibble set to 8, as messaging::events::
-- UserCreated::event_id computes it, so an announcement made twice is a
-- duplicate the bus drops. `occurredAt` is the sign-up time.
INSERT INTO outbox (event_id, subject, payload, created_at)
SELECT
    substr(id, 1, 14) || '8' || substr(id, 16),
    'user.created',
    json_build_object(
        'id', substr(id, 1, 14) || '8' || substr(id, 16),
        'subject', 'user.created',
        'occurredAt', to_char(to_timestamp(created_at / 1000.0) AT TIME ZONE 'UTC',
                              'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
        'data', json_build_object('id', id, 'email', email)
    )::text,
    created_at
FROM users
ORDER BY created_at, id;
