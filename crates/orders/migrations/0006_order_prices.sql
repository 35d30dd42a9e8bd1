-- The price an order was made at (issue 22): what its buyer was shown,
-- what `order.created` announced, what payments charges and what the
-- seller is credited. Kept with the order, because the replica's price
-- follows the seller's edits (one may race the order, DECISIONS.md, "A
-- price edit racing an order"). Orders placed before this column existed
-- take the replica's price now, which is what they showed until then.
-- NULL only for a row an older replica writes during a rolling upgrade;
-- reads fall back to the replica's price for it, as before.
ALTER TABLE orders ADD COLUMN price BIGINT;
UPDATE orders SET price = (SELECT t.price FROM tickets t WHERE t.id = orders.ticket_id);
