-- outgoing_mail.about: the ticket a mail concerns, for mail decided ahead
-- of its time (the reminder a day before the event, due at its
-- `next_attempt_at`) to be called off (`cancelled`) when its order is
-- refunded or its ticket changes hands. Null for mail that is never
-- called off.
ALTER TABLE outgoing_mail ADD COLUMN about TEXT;

CREATE INDEX outgoing_mail_about ON outgoing_mail (about, state);
