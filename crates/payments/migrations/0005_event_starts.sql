-- Events on a listing (issue 24): when the event of an order's ticket
-- starts (`order.created`'s ticket.startsAt), in ms since the Unix epoch;
-- no attempt to pay the order starts after it. NULL: the listing gave no
-- date.
ALTER TABLE orders ADD COLUMN starts_at BIGINT;
