-- The price each order was made at, from its `order.created` (issue 22).
-- A ticket is sold at its order's price, not at the listing's: a seller's
-- edit can reach this service before the order that was placed at the
-- old price (DECISIONS.md, "A price edit racing an order"). Written with
-- the reservation (or the wait, or the refusal of a withdrawn ticket),
-- read by the sale. A sale of an order placed before this table existed
-- falls back to the ticket's price, which is what it was sold at before.
CREATE TABLE order_prices (
    order_id TEXT PRIMARY KEY,
    price    BIGINT NOT NULL        -- integer cents
);
