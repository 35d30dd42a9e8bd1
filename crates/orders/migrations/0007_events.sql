-- Events on a listing (issue 24): the replica keeps what an order shows of
-- its ticket's event, and when the event starts (an order for a started
-- event is refused). `starts_at` is ms since the Unix epoch, for the
-- check; `starts_at_text` is the RFC 3339 text as the seller gave it, for
-- display and for `order.created`. `ended` = 1 once tickets announced the
-- end of sale.
ALTER TABLE tickets ADD COLUMN venue TEXT;
ALTER TABLE tickets ADD COLUMN starts_at BIGINT;
ALTER TABLE tickets ADD COLUMN starts_at_text TEXT;
ALTER TABLE tickets ADD COLUMN section TEXT;
ALTER TABLE tickets ADD COLUMN seat_row TEXT;
ALTER TABLE tickets ADD COLUMN seat TEXT;
ALTER TABLE tickets ADD COLUMN ended BIGINT NOT NULL DEFAULT 0;
